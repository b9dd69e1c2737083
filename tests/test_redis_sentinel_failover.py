"""A Sentinel fail-over under load, as real processes: a master, a replica and a Sentinel;
``trio-tasks serve`` and ``trio-tasks worker`` through the Sentinel with
``BROKER_MIN_REPLICAS=1``; two clients submitting; ``kill -9`` of the master mid-load.

Every job the API accepted (202) must run; the nodes must stay up and find the new master.
Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from _server import ServerProcess
from cluster_app import read_events
from redis_server import replica_of, wait_for
from test_redis_sentinel import Deployment, start_deployment, stop_deployment

pytestmark = [pytest.mark.slow, pytest.mark.redis]

TESTS = Path(__file__).parent
#: Longer than a no-op, so that a backlog builds up (jobs accepted, not yet run).
JOB = {"type": "sleep", "payload": {"seconds": 0.02}}


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    deployment = start_deployment(tmp_path / "redis", replica=True, sentinel=True, relay=True)
    yield deployment
    stop_deployment(deployment)


class Submitter(threading.Thread):
    """A client submitting 20 ms jobs one by one, with ids of its own, until stopped."""

    def __init__(self, url: str, name: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.name = name
        self.accepted: list[str] = []
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                job_id = f"{self.name}-{n}"
                try:
                    answer = http.post("/jobs", json=JOB | {"job_id": job_id})
                except httpx.HTTPError:
                    self.refused += 1
                    continue
                if answer.status_code == 202:
                    self.accepted.append(job_id)
                else:
                    assert answer.status_code == 503, answer.text
                    self.refused += 1
                    time.sleep(0.02)


def test_kill_9_of_the_master_under_load_loses_no_accepted_job(
    deployment: Deployment, tmp_path: Path
) -> None:
    sentinel, replica = deployment.sentinel, deployment.replica
    assert sentinel is not None
    assert replica is not None
    runs = tmp_path / "runs"
    runs.mkdir()
    pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    env = {
        "BROKER_URL": deployment.sentinel_url("?namespace=failover&lease=2s"),
        # Without it (0), this test loses the jobs accepted while the replica lagged.
        "BROKER_MIN_REPLICAS": "1",
        "TASKS_APP": "cluster_app:registry",
        "PYTHONPATH": pythonpath,
        "CLUSTER_RUNS_DIR": str(runs),
        "WORKER_NUM_WORKERS": "2",
        "WORKER_MAX_CONCURRENCY": "100000",
    }
    with ExitStack() as stack:
        api = stack.enter_context(ServerProcess("serve", env=env))
        api.wait_ready(20)
        worker = stack.enter_context(ServerProcess("worker", env=env))
        worker.wait_for_log("trio-tasks started", 20)
        clients = [Submitter(api.url, "a"), Submitter(api.url, "b")]
        for client in clients:
            client.start()
        unhealthy = threading.Event()
        watching = threading.Event()

        def watch_health() -> None:
            with httpx.Client(base_url=api.url, timeout=2) as http:
                while not watching.is_set():
                    try:
                        if http.get("/health").status_code == 503:
                            unhealthy.set()
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.05)

        watcher = threading.Thread(target=watch_health, daemon=True)
        watcher.start()
        try:
            wait_for(lambda: sum(len(c.accepted) for c in clients) >= 150, 30, "150 jobs accepted")
            # The replica lags (its link holds data back, as a slow network would), then the
            # master dies: what the replica did not get is gone with it.
            assert deployment.relay is not None
            deployment.relay.freeze()
            time.sleep(1.5)
            deployment.master.kill()  # SIGKILL: no goodbye
            deployment.relay.close()
            killed_at = sum(len(c.accepted) for c in clients)
            wait_for(
                lambda: sentinel.master_address() == ("127.0.0.1", replica.port),
                20,
                "the sentinel to promote the replica",
            )
            # The new master needs a replica of its own before writes are confirmed again.
            spare = replica_of(deployment.master, tmp_path / "spare")
            spare.extra = ("--replicaof", "127.0.0.1", str(replica.port))
            spare.start()
            stack.callback(spare.kill)
            wait_for(
                lambda: sum(len(c.accepted) for c in clients) >= killed_at + 150,
                30,
                "150 more jobs accepted after the fail-over",
            )
        finally:
            for client in clients:
                client.stop.set()
            for client in clients:
                client.join(10)
            watching.set()
            watcher.join(5)
        accepted = {job_id for client in clients for job_id in client.accepted}

        def ran() -> set[str]:
            return {job_id for _, event, job_id in read_events(runs) if event == "done"}

        with contextlib.suppress(AssertionError):
            wait_for(lambda: accepted <= ran(), 30, "every accepted job to run")
        lost = accepted - ran()
        assert not lost, f"{len(lost)} of {len(accepted)} accepted jobs never ran"
        assert unhealthy.is_set(), "/health never answered 503 while there was no master"
        assert api.process.poll() is None  # the nodes stayed up
        assert worker.process.poll() is None
        with httpx.Client(base_url=api.url, timeout=5) as http:
            wait_for(lambda: http.get("/health").status_code == 200, 20, "healthy again")
        refused = sum(c.refused for c in clients)
        print(f"accepted {len(accepted)}, refused {refused}, ran {len(ran())}")
