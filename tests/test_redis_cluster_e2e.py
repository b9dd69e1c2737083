"""Many nodes on one Redis, as real processes: ``trio-tasks worker`` and ``trio-tasks serve``
(``python -m trio_tasks``) with ``BROKER_URL=redis://…`` and the job types of
``tests/cluster_app.py``, whose handlers record every run in a file per process.

Each test starts its own processes in a namespace of its own; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from _server import ServerProcess
from cluster_app import read_events
from redis_server import address, command

pytestmark = [pytest.mark.slow, pytest.mark.redis]

TESTS = Path(__file__).parent


class Cluster:
    """Nodes sharing one Redis namespace; every process is killed when the test ends."""

    def __init__(self, stack: ExitStack, runs: Path, broker_url: str) -> None:
        self.stack = stack
        self.runs = runs
        self.broker_url = broker_url
        self.host, self.port = address(broker_url)
        self.namespace = parse_qs(urlsplit(broker_url).query)["namespace"][0]
        self.prefix = f"tt:{{{self.namespace}}}:"

    def start(self, command_name: str, workers: int, **env: str) -> ServerProcess:
        """Start a ``serve`` or ``worker`` node and wait until it is ready."""
        pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
        full_env = {
            "BROKER_URL": self.broker_url,
            "TASKS_APP": "cluster_app:registry",
            "PYTHONPATH": pythonpath,
            "CLUSTER_RUNS_DIR": str(self.runs),
            "WORKER_NUM_WORKERS": str(workers),
            "WORKER_MAX_CONCURRENCY": "5000",
            **env,
        }
        process = self.stack.enter_context(ServerProcess(command_name, env=full_env))
        if command_name == "serve":
            process.wait_ready(20)
        else:
            process.wait_for_log("trio-tasks started", 20)
        return process

    def redis(self, *args: str) -> Any:
        """One Redis command (blocking), for assertions."""
        return command(self.host, self.port, *args)

    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def events(self) -> list[tuple[str, str, str]]:
        return read_events(self.runs)


@pytest.fixture
def cluster_for(tmp_path: Path) -> Iterator[Callable[[str], Cluster]]:
    """``cluster_for(broker_url)``: a :class:`Cluster` on that URL."""
    with ExitStack() as stack:
        runs = tmp_path / "runs"
        runs.mkdir()
        yield lambda url: Cluster(stack, runs, url)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def submit_batch(http: httpx.Client, jobs: list[dict[str, Any]]) -> list[str]:
    answer = http.post("/jobs/batch", json=jobs)
    assert answer.status_code == 202, answer.text
    return [entry["job_id"] for entry in answer.json()["jobs"]]


def test_two_workers_and_a_server_share_2000_jobs_each_run_once(
    cluster_for: Callable[[str], Cluster], redis_url: str
) -> None:
    cluster = cluster_for(redis_url)
    api = cluster.start("serve", 4)
    workers = [cluster.start("worker", 4), cluster.start("worker", 4)]
    with httpx.Client(base_url=api.url, timeout=10) as http:
        ids: list[str] = []
        for _ in range(4):
            ids += submit_batch(http, [{"type": "noop"}] * 500)
        assert len(set(ids)) == 2000
        wait_until(
            lambda: int(cluster.redis("ZCARD", f"{cluster.prefix}finished")) == 2000,
            60,
            "2000 finished jobs",
        )
        stats = http.get("/stats").json()
    runs = [(pid, job_id) for pid, event, job_id in cluster.events() if event == "run"]
    per_job = Counter(job_id for _, job_id in runs)
    assert set(per_job) == set(ids)
    assert [job_id for job_id, n in per_job.items() if n != 1] == []
    per_process = Counter(pid for pid, _ in runs)
    pids = {str(p.process.pid) for p in [api, *workers]}
    assert set(per_process) == pids, per_process  # all three nodes took a share
    totals = dict(zip(*[iter(cluster.redis("HGETALL", f"{cluster.prefix}stats"))] * 2, strict=True))
    assert totals == {"submitted": "2000", "completed": "2000"}
    assert stats["queue_size"] == 0
    assert stats["jobs_running"] == 0


def test_a_job_of_a_killed_worker_completes_on_another_after_its_lease(
    cluster_for: Callable[[str], Cluster], redis_url: str
) -> None:
    cluster = cluster_for(f"{redis_url}&lease=1s")
    api = cluster.start("serve", 0)
    doomed = cluster.start("worker", 1)
    with httpx.Client(base_url=api.url, timeout=10) as http:
        answer = http.post("/jobs", json={"type": "sleep", "payload": {"seconds": 1.5}})
        assert answer.status_code == 202
        job_id = answer.json()["job_id"]
        wait_until(
            lambda: "start" in {e for pid, e, j in cluster.events() if j == job_id},
            10,
            "the first worker to start the job",
        )
        survivor = cluster.start("worker", 1)
        doomed.process.kill()  # SIGKILL mid-job: no hand-back, no outcome
        killed_at = time.monotonic()
        final = http.get(f"/jobs/{job_id}", params={"wait": "20s"}).json()
        recovered_in = time.monotonic() - killed_at
    assert final["status"] == "completed", final
    assert final["attempts"] == 2
    events = [(pid, e) for pid, e, j in cluster.events() if j == job_id]
    assert events == [
        (str(doomed.process.pid), "start"),
        (str(survivor.process.pid), "start"),
        (str(survivor.process.pid), "done"),
    ]
    # The lease (1s), one reaper tick and the 1.5s run: seconds, not the job's 5m timeout.
    assert recovered_in < 10


def test_restarting_redis_mid_run_loses_and_duplicates_nothing(
    cluster_for: Callable[[str], Cluster], own_redis: Any
) -> None:
    cluster = cluster_for(f"{own_redis.url}?namespace=outage&lease=2s")
    api = cluster.start("serve", 2)
    cluster.start("worker", 3)
    cluster.start("worker", 3)
    with httpx.Client(base_url=api.url, timeout=10) as http:
        ids = submit_batch(http, [{"type": "sleep", "payload": {"seconds": 0.02}}] * 400)

        def done() -> int:
            return sum(1 for _, e, _ in cluster.events() if e == "done")

        wait_until(lambda: done() >= 80, 30, "a fifth of the jobs to run")
        stopped_at = time.monotonic()
        own_redis.stop()
        unhealthy = wait_until(
            lambda: (r := http.get("/health")).status_code == 503 and r.json(), 10, "a 503"
        )
        assert unhealthy["status"] == "unhealthy"
        assert "redis" in unhealthy["reason"]
        refused = http.post("/jobs", json={"type": "noop"})
        assert refused.status_code == 503
        time.sleep(2.0)  # longer than the lease
        own_redis.start()
        # Outcomes are retried for twice the lease (4 s): an outage longer than that may run
        # a job again (docs/redis.md), one shorter may not.
        outage = f"Redis was away {time.monotonic() - stopped_at:.2f}s (4s promised)"
        wait_until(lambda: done() >= 400, 60, "every job to run")
        wait_until(lambda: http.get("/health").status_code == 200, 10, "healthy again")
        finished = wait_until(
            lambda: (
                http.get("/jobs", params={"status": "completed", "limit": 1000}).json()["count"]
                >= 400
            ),
            10,
            "every job completed",
        )
        assert finished
    per_job = Counter(j for _, e, j in cluster.events() if e == "done")
    assert set(per_job) == set(ids)
    assert [job_id for job_id, n in per_job.items() if n != 1] == [], outage
    starts = Counter(j for _, e, j in cluster.events() if e == "start")
    assert [job_id for job_id, n in starts.items() if n != 1] == [], outage


def test_priorities_hold_across_worker_processes(
    cluster_for: Callable[[str], Cluster], redis_url: str
) -> None:
    cluster = cluster_for(redis_url)
    api = cluster.start("serve", 0)
    priorities = ["low", "normal", "high", "urgent"]
    with httpx.Client(base_url=api.url, timeout=10) as http:
        jobs = [{"type": "noop", "priority": priorities[i % 4]} for i in range(40)]
        ids = submit_batch(http, jobs)
        cluster.start("worker", 2)
        cluster.start("worker", 2)
        wait_until(
            lambda: int(cluster.redis("ZCARD", f"{cluster.prefix}finished")) == 40, 30, "40 jobs"
        )
    # Lease tokens come from one counter in Redis: sorting by them gives the order of the pops.
    token = {job_id: int(cluster.redis("HGET", cluster.job_key(job_id), "tok")) for job_id in ids}
    rank = {name: i for i, name in enumerate(priorities)}
    popped = sorted(ids, key=token.__getitem__)
    expected = sorted(ids, key=lambda j: (-rank[jobs[ids.index(j)]["priority"]], ids.index(j)))
    assert popped == expected


def test_cancel_on_one_node_stops_the_job_on_another_within_a_second(
    cluster_for: Callable[[str], Cluster], redis_url: str
) -> None:
    cluster = cluster_for(redis_url)
    api = cluster.start("serve", 0)
    worker = cluster.start("worker", 1)
    with httpx.Client(base_url=api.url, timeout=10) as http:
        job_id = http.post("/jobs", json={"type": "sleep", "payload": {"seconds": 60}}).json()[
            "job_id"
        ]
        wait_until(
            lambda: "start" in {e for _, e, j in cluster.events() if j == job_id},
            10,
            "the job to start",
        )
        asked = time.monotonic()
        answer = http.delete(f"/jobs/{job_id}")
        assert answer.status_code == 202, answer.text
        wait_until(
            lambda: "cancelled" in {e for _, e, j in cluster.events() if j == job_id},
            5,
            "the handler to be cancelled",
        )
        stopped_in = time.monotonic() - asked
        final = http.get(f"/jobs/{job_id}", params={"wait": "5s"}).json()
    assert final["status"] == "cancelled"
    assert stopped_in < 1.0
    assert [(pid, e) for pid, e, j in cluster.events() if j == job_id] == [
        (str(worker.process.pid), "start"),
        (str(worker.process.pid), "cancelled"),
    ]


def test_a_stopping_worker_hands_its_running_job_to_another_node(
    cluster_for: Callable[[str], Cluster], redis_url: str
) -> None:
    cluster = cluster_for(redis_url)
    api = cluster.start("serve", 0)
    stopping = cluster.start("worker", 1, SHUTDOWN_TIMEOUT="200ms")
    with httpx.Client(base_url=api.url, timeout=10) as http:
        answer = http.post("/jobs", json={"type": "sleep", "payload": {"seconds": 2}})
        job_id = answer.json()["job_id"]
        wait_until(
            lambda: "start" in {e for _, e, j in cluster.events() if j == job_id},
            10,
            "the job to start",
        )
        successor = cluster.start("worker", 1)
        stopping.send_signal(signal.SIGTERM)
        assert stopping.wait_exit(15) == 0
        stopped = stopping.wait_for_log("trio-tasks stopped")
        final = http.get(f"/jobs/{job_id}", params={"wait": "20s"}).json()
    assert stopped["abandoned"] == 0
    assert final["status"] == "completed", final
    assert final["attempts"] == 2
    assert [(pid, e) for pid, e, j in cluster.events() if j == job_id] == [
        (str(stopping.process.pid), "start"),
        (str(stopping.process.pid), "cancelled"),
        (str(successor.process.pid), "start"),
        (str(successor.process.pid), "done"),
    ]
