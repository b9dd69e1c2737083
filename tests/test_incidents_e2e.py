"""No handler can stop a node, tried on real processes: ``trio-tasks serve`` alone, and
``serve`` with two ``worker`` processes on one Redis (issue 8, item 1).

The handlers are ``raise`` jobs of ``tests/cluster_app.py``: each raises ``KeyboardInterrupt``,
``SystemExit``, ``GeneratorExit`` or a bare ``BaseException``.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from _server import ServerProcess
from cluster_app import RAISES
from test_redis_cluster_e2e import TESTS, Cluster, cluster_for, submit_batch, wait_until

__all__ = ["cluster_for"]  # the fixture, imported for the tests below

pytestmark = pytest.mark.slow


def _final(http: httpx.Client, job_id: str) -> dict[str, object]:
    answer = http.get(f"/jobs/{job_id}", params={"wait": "20s"})
    assert answer.status_code == 200, answer.text
    job: dict[str, object] = answer.json()
    return job


def test_serve_survives_every_base_exception_a_handler_raises(tmp_path: Path) -> None:
    env = {
        "TASKS_APP": "cluster_app:registry",
        "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p),
        "CLUSTER_RUNS_DIR": str(tmp_path),
    }
    with ServerProcess("serve", env=env) as node:
        node.wait_ready(20)
        _run_bad_and_good_jobs(node)


def _run_bad_and_good_jobs(node: ServerProcess) -> None:
    with httpx.Client(base_url=node.url, timeout=30) as http:
        jobs = [{"type": "raise", "payload": {"kind": kind}, "retries": 1} for kind in RAISES]
        bad = dict(zip(RAISES, submit_batch(http, jobs), strict=True))
        good = submit_batch(http, [{"type": "noop"}] * 20)
        for kind, job_id in bad.items():
            job = _final(http, job_id)
            assert job["status"] == "failed", job
            assert job["attempts"] == 2
            assert job["error"] == {"message": "raised by the handler", "type": kind}
        assert all(_final(http, job_id)["status"] == "completed" for job_id in good)
        assert http.get("/health").status_code == 200
        stats = http.get("/stats").json()
    assert (stats["jobs_failed"], stats["jobs_completed"], stats["jobs_retried"]) == (4, 20, 4)
    node.send_signal(signal.SIGTERM)
    assert node.wait_exit(15) == 0
    records = node.records  # every stdout line is JSON
    failed = [r for r in records if r["msg"] == "job failed"]
    assert sorted(str(r["error_type"]) for r in failed) == sorted(RAISES)
    assert node.stderr_lines == []


@pytest.mark.redis
def test_a_bad_job_fails_on_redis_and_every_node_keeps_running(
    cluster_for: Callable[[str], Cluster], redis_url: str
) -> None:
    cluster = cluster_for(redis_url)
    api = cluster.start("serve", 2, WORKER_RETRY_DELAY="10ms")
    workers = [cluster.start("worker", 2, WORKER_RETRY_DELAY="10ms") for _ in range(2)]
    nodes = [api, *workers]
    with httpx.Client(base_url=api.url, timeout=30) as http:
        bad = submit_batch(
            http,
            [{"type": "raise", "payload": {"kind": kind}, "retries": 1} for kind in RAISES],
        )
        good = submit_batch(http, [{"type": "noop"}] * 50)
        wait_until(
            lambda: int(cluster.redis("ZCARD", f"{cluster.prefix}finished")) == 54,
            60,
            "54 finished jobs",
        )
        jobs = {job_id: http.get(f"/jobs/{job_id}").json() for job_id in bad + good}
    for job_id in bad:
        assert jobs[job_id]["status"] == "failed"
        assert jobs[job_id]["attempts"] == 2  # of 2 allowed, never more
    assert all(jobs[job_id]["status"] == "completed" for job_id in good)
    # Every node is still up, and each bad job ran exactly twice in all.
    assert all(node.process.poll() is None for node in nodes)
    runs = Counter(job_id for _, event, job_id in cluster.events() if event == "run")
    assert all(runs[job_id] == 2 for job_id in bad)
    assert all(runs[job_id] == 1 for job_id in good)
    for node in nodes:
        node.send_signal(signal.SIGTERM)
    assert [node.wait_exit(20) for node in nodes] == [0, 0, 0]
