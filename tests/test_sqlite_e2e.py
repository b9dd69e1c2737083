"""The SQLite broker on real ``trio-tasks serve`` processes: ``kill -9`` under load, SIGTERM
with a thousand queued jobs, a second process on the same file, a corrupt file (issue 15).

The handlers are ``tests/cluster_app.py``'s: every run is appended to a file per process, so a
test can count runs across restarts.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from _server import ServerProcess
from cluster_app import read_events

pytestmark = pytest.mark.slow

TESTS = Path(__file__).parent
FINAL = {"completed", "failed", "cancelled"}


def node_env(db: Path, runs: Path, workers: int, **env: str) -> dict[str, str]:
    pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    return {
        "BROKER_URL": f"sqlite:///{db}",
        "TASKS_APP": "cluster_app:registry",
        "PYTHONPATH": pythonpath,
        "CLUSTER_RUNS_DIR": str(runs),
        "WORKER_NUM_WORKERS": str(workers),
        "WORKER_MAX_CONCURRENCY": "5000",
        **env,
    }


def follow_all(url: str, ids: list[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
    """Long-poll every job until it is final; return them by id."""
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=30) as client:
        for job_id in ids:
            while True:
                response = client.get(f"/jobs/{job_id}", params={"wait": "5s"})
                assert response.status_code == 200, (job_id, response.text)
                job = response.json()
                if job["status"] in FINAL:
                    found[job_id] = job
                    break
                assert time.monotonic() < deadline, f"job {job_id} is still {job['status']}"
    return found


def test_kill_9_under_load_loses_no_acknowledged_job(tmp_path: Path) -> None:
    db, runs = tmp_path / "jobs.db", tmp_path / "runs"
    runs.mkdir()
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(url: str, n: int) -> None:
        body = {"type": "sleep", "payload": {"seconds": 0.02}}
        with httpx.Client(base_url=url, timeout=5) as http:
            while not stop.is_set():
                try:
                    response = http.post("/jobs", json=body)
                except httpx.HTTPError:
                    return  # the server is gone
                if response.status_code == 202:
                    with lock:
                        acknowledged.append(response.json()["job_id"])

    with ServerProcess(env=node_env(db, runs, workers=4)) as first:
        url = first.wait_ready()
        clients = [threading.Thread(target=client, args=(url, i)) for i in range(4)]
        for thread in clients:
            thread.start()
        # Under load: clients submitting, workers running jobs.
        deadline = time.monotonic() + 10
        while len(read_events(runs)) < 100 or len(acknowledged) < 200:
            assert time.monotonic() < deadline, "the server never got busy"
            time.sleep(0.05)
        first.process.kill()
        first.wait_exit(10)
        stop.set()
        for thread in clients:
            thread.join(10)
    assert len(acknowledged) >= 200
    ran_before = {job_id for _, event, job_id in read_events(runs) if event == "done"}
    with ServerProcess(env=node_env(db, runs, workers=4)) as second:
        url = second.wait_ready()
        jobs = follow_all(url, acknowledged)
        second.send_signal(signal.SIGTERM)
        assert second.wait_exit(20) == 0
    # Every acknowledged job ran to an outcome: none lost.
    assert set(jobs) == set(acknowledged)
    assert {job["status"] for job in jobs.values()} == {"completed"}
    done = {job_id for _, event, job_id in read_events(runs) if event == "done"}
    assert set(acknowledged) <= done
    # Those that finished before the crash kept their outcome or ran again (at-least-once),
    # and the jobs left for the second process ran there.
    assert len(ran_before) < len(acknowledged)


def test_sigterm_keeps_a_thousand_queued_jobs_for_the_next_start(tmp_path: Path) -> None:
    db, runs = tmp_path / "jobs.db", tmp_path / "runs"
    runs.mkdir()
    ids: list[str] = []
    with ServerProcess(env=node_env(db, runs, workers=0)) as first:
        url = first.wait_ready()
        with httpx.Client(base_url=url) as client:
            for _ in range(10):
                response = client.post("/jobs/batch", json=[{"type": "noop"}] * 100)
                assert response.status_code == 202
                ids += [job["job_id"] for job in response.json()["jobs"]]
            assert client.get("/stats").json()["queue_size"] == 1000
        first.send_signal(signal.SIGTERM)
        assert first.wait_exit(20) == 0
        # Kept, not abandoned; and said so.
        assert not [r for r in first.records if r["msg"] == "unfinished jobs abandoned at shutdown"]
        assert first.wait_for_log("job database closed")["kept"] == 1000
        assert first.wait_for_log("trio-tasks stopped")["abandoned"] == 0
    with ServerProcess(env=node_env(db, runs, workers=4)) as second:
        url = second.wait_ready()
        assert second.wait_for_log("job database opened")["queued"] == 1000
        jobs = follow_all(url, ids)
        second.send_signal(signal.SIGTERM)
        assert second.wait_exit(20) == 0
    assert {job["status"] for job in jobs.values()} == {"completed"}
    # All 1,000 ran, each once.
    ran = [job_id for _, event, job_id in read_events(runs) if event == "run"]
    assert sorted(ran) == sorted(ids)


def test_a_second_server_on_the_same_file_exits_2_with_one_line(tmp_path: Path) -> None:
    db, runs = tmp_path / "jobs.db", tmp_path / "runs"
    runs.mkdir()
    with ServerProcess(env=node_env(db, runs, workers=1)) as first:
        first.wait_ready()
        with ServerProcess(env=node_env(db, runs, workers=1)) as second:
            assert second.wait_exit(20) == 2
        first.send_signal(signal.SIGTERM)
        assert first.wait_exit(20) == 0
    assert len(second.stderr_lines) == 1, second.stderr_lines
    line = second.stderr_lines[0]
    assert line.startswith("trio-tasks: error: BROKER_URL=")
    assert f"{db} is in use by another process (pid {first.process.pid})" in line


def test_a_corrupt_file_exits_2_with_one_line(tmp_path: Path) -> None:
    db, runs = tmp_path / "jobs.db", tmp_path / "runs"
    runs.mkdir()
    db.write_bytes(b"\x00garbage, not a database\n" * 400)
    with ServerProcess(env=node_env(db, runs, workers=1)) as server:
        assert server.wait_exit(20) == 2
    assert len(server.stderr_lines) == 1, server.stderr_lines
    assert "not an SQLite database" in server.stderr_lines[0]
    assert not any("Traceback" in line for line in server.stdout_lines)
