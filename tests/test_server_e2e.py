"""End to end: a real ``python -m trio_tasks serve`` subprocess, its HTTP API, signals, exit
status and logs (SPEC §6, §8, §9)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _server import ROOT, ServerProcess

pytestmark = pytest.mark.slow

GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?\d+(\.\d+)?s$")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One server shared by the tests that only submit and read."""
    with ServerProcess() as process:
        process.wait_ready()
        yield process
        process.send_signal(signal.SIGTERM)
        assert process.wait_exit(15) == 0


def follow(client: httpx.Client, job_id: str, timeout: float = 10) -> dict[str, Any]:
    """Long-poll a job until it is final."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}", params={"wait": "5s"}).json()
        if job["status"] in {"completed", "failed", "cancelled"}:
            return job
    raise AssertionError(f"job {job_id} did not finish within {timeout}s")


def wait_until(predicate: Any, timeout: float = 10, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def busy_workers(client: httpx.Client) -> int:
    return int(client.get("/workers").json()["busy"])


def test_the_seeds_requests_answer_the_seeds_fields(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as client:
        health = client.get("/health")
        submitted = client.post("/jobs?type=email&priority=high")
        job_id = submitted.json()["job_id"]
        done = follow(client, job_id)
        stats = client.get("/stats").json()
        workers = client.get("/workers").json()
        metrics = client.get("/metrics")
    assert health.status_code == 200
    assert health.json()["status"] == "healthy"
    assert submitted.status_code == 202
    assert submitted.json()["status"] == "submitted"
    assert (done["type"], done["priority"], done["status"]) == ("email", "high", "completed")
    for field in ["jobs_submitted", "jobs_completed", "jobs_failed", "workers_active"]:
        assert isinstance(stats[field], int)
    assert stats["jobs_completed"] >= 1
    assert stats["queue_size"] == 0
    assert GO_DURATION.match(stats["uptime"])
    assert workers["workers"] == 2
    assert 'trio_tasks_jobs_completed_total{priority="high",type="email"}' in metrics.text
    # The job's outcome is one JSON line at info (its start is at debug).
    completed = server.wait_for_log("job completed", job_id=job_id)
    assert (completed["job_type"], completed["priority"], completed["attempt"]) == (
        "email",
        "high",
        1,
    )
    assert completed["worker_id"].startswith("worker-")


def test_the_client_example_runs_against_a_live_server(server: ServerProcess) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "client.py"), "--url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "health: healthy"
    assert re.match(r"^cancelled \S+: cancelled$", lines[1])
    assert lines[2].startswith("email   high    completed")
    assert [line.split()[:3] for line in lines[3:7]] == [
        ["report", priority, "completed"] for priority in ["low", "normal", "high", "urgent"]
    ]
    assert lines[7].startswith("submitted=")


def test_priorities_win_under_a_full_pool() -> None:
    with (
        ServerProcess(env={"WORKER_NUM_WORKERS": "1"}) as process,
        httpx.Client(base_url=process.wait_ready()) as client,
    ):
        blocker = client.post("/jobs", json={"type": "backup", "payload": {"duration": "400ms"}})
        wait_until(lambda: busy_workers(client) == 1)
        ids = {
            priority: client.post(
                "/jobs", json={"type": "email", "priority": priority, "payload": {"duration": 0}}
            ).json()["job_id"]
            for priority in ["low", "normal", "high", "urgent"]
        }
        follow(client, blocker.json()["job_id"])
        jobs = {priority: follow(client, job_id) for priority, job_id in ids.items()}
        process.send_signal(signal.SIGTERM)
        assert process.wait_exit(10) == 0
    order = sorted(jobs, key=lambda priority: jobs[priority]["started_at"])
    assert order == ["urgent", "high", "normal", "low"]


def test_sigterm_lets_running_jobs_finish_and_exits_0() -> None:
    with (
        ServerProcess(env={"SHUTDOWN_TIMEOUT": "10s"}) as process,
        httpx.Client(base_url=process.wait_ready()) as client,
    ):
        running = [
            client.post("/jobs", json={"type": "report", "payload": {"duration": "1s"}}).json()
            for _ in range(2)
        ]
        wait_until(lambda: busy_workers(client) == 2)
        queued = client.post("/jobs?type=email&priority=low").json()["job_id"]
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait_for_log("shutdown requested", signal="SIGTERM")
        # While the running jobs drain, the API answers: unhealthy for new work, lookups fine.
        health = client.get("/health")
        refused = client.post("/jobs?type=email")
        lookup = client.get(f"/jobs/{running[0]['job_id']}")
        status = process.wait_exit(10)
        elapsed = time.monotonic() - sent
    assert status == 0
    assert elapsed < 10
    assert health.status_code == 503
    assert health.json()["status"] == "shutting_down"
    assert refused.status_code == 503
    assert lookup.json()["status"] == "running"
    records = process.records  # every stdout line parses as JSON
    for job in running:
        assert any(r["msg"] == "job completed" and r["job_id"] == job["job_id"] for r in records)
    (abandoned,) = [r for r in records if r["msg"] == "unfinished jobs abandoned at shutdown"]
    assert (abandoned["count"], abandoned["first_ids"]) == (1, [queued])
    assert records[-1]["msg"] == "trio-tasks stopped"
    assert process.stderr_lines == []


def test_a_node_starts_without_blocking_its_event_loop() -> None:
    # The HTTP stack is imported in a thread: the watchdog used to warn at every start.
    with ServerProcess() as process:
        process.wait_ready()
        process.send_signal(signal.SIGTERM)
        assert process.wait_exit(10) == 0
    blocked = [r for r in process.records if r["msg"] == "the event loop is blocked"]
    assert blocked == []
    assert any(r["msg"] == "http server listening" for r in process.records)


def test_a_second_signal_cancels_running_jobs_at_once() -> None:
    with (
        ServerProcess(env={"SHUTDOWN_TIMEOUT": "60s"}) as process,
        httpx.Client(base_url=process.wait_ready()) as client,
    ):
        job = client.post("/jobs", json={"type": "backup", "payload": {"duration": "60s"}})
        wait_until(lambda: busy_workers(client) == 1)
        process.send_signal(signal.SIGTERM)
        process.wait_for_log("shutdown requested")
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        status = process.wait_exit(10)
        elapsed = time.monotonic() - sent
    assert status == 0
    assert elapsed < 5
    records = process.records
    assert any(r["msg"] == "second signal: cancelling running jobs now" for r in records)
    interrupted = [r for r in records if r["msg"] == "job interrupted by shutdown"]
    assert [r["job_id"] for r in interrupted] == [job.json()["job_id"]]
    assert records[-1]["msg"] == "trio-tasks stopped"
    assert process.stderr_lines == []


def test_the_grace_period_ends_running_jobs_after_sigint() -> None:
    with (
        ServerProcess(env={"SHUTDOWN_TIMEOUT": "300ms"}) as process,
        httpx.Client(base_url=process.wait_ready()) as client,
    ):
        job = client.post("/jobs", json={"type": "sync", "payload": {"duration": "60s"}})
        wait_until(lambda: busy_workers(client) == 1)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        status = process.wait_exit(10)
        elapsed = time.monotonic() - sent
    assert status == 0
    assert elapsed < 5
    records = process.records
    assert any(r["msg"] == "shutdown requested" and r["signal"] == "SIGINT" for r in records)
    # In memory, an interrupted job is abandoned with the queued ones, and logged.
    (abandoned,) = [r for r in records if r["msg"] == "unfinished jobs abandoned at shutdown"]
    assert abandoned["first_ids"] == [job.json()["job_id"]]
    assert process.stderr_lines == []


def test_a_bad_environment_value_exits_2_with_one_line() -> None:
    with ServerProcess(env={"WORKER_JOB_TIMEOUT": "five minutes"}) as process:
        status = process.wait_exit(15)
    assert status == 2
    assert process.stdout_lines == []
    assert process.stderr_lines == [
        "trio-tasks: error: WORKER_JOB_TIMEOUT='five minutes': expected a duration like "
        "300ms, 1.5h, 2h45m or a number of seconds, got 'five minutes'"
    ]


def test_worker_runs_jobs_without_http_and_stops_on_a_signal() -> None:
    with ServerProcess("worker") as process:
        started = process.wait_for_log("trio-tasks started")
        process.send_signal(signal.SIGTERM)
        status = process.wait_exit(10)
    assert status == 0
    assert (started["mode"], started["urls"]) == ("worker", [])
    records = process.records
    assert not any(r["msg"].startswith("http server") for r in records)
    assert any(r["level"] == "warning" and "memory://" in r["msg"] for r in records)
    assert records[-1]["msg"] == "trio-tasks stopped"
    assert process.stderr_lines == []


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "trio-tasks"
    done = subprocess.run(
        [str(script), "serve", "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "WORKER_NUM_WORKERS" in done.stdout
