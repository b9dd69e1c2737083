"""Process isolation on a real ``trio-tasks serve``: a runaway handler is killed at its timeout
while the HTTP API and other jobs go on (issue 10)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from _server import ServerProcess

pytestmark = pytest.mark.slow

TESTS = Path(__file__).parent


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_serve_kills_a_runaway_isolated_handler_and_keeps_answering(tmp_path: Path) -> None:
    env = {
        "TASKS_APP": "isolated_app:registry",
        "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p),
        "PROCESS_WORKERS": "2",
    }
    pid_file = tmp_path / "pid"
    with ServerProcess("serve", env=env) as node:
        node.wait_ready(30)
        with httpx.Client(base_url=node.url, timeout=10) as http:
            answer = http.post(
                "/jobs", json={"type": "spin", "payload": {"pid_file": str(pid_file)}}
            )
            assert answer.status_code == 202, answer.text
            job_id = answer.json()["job_id"]
            deadline = time.monotonic() + 10
            while not pid_file.exists() or not pid_file.read_text():
                assert time.monotonic() < deadline
                time.sleep(0.02)
            pid = int(pid_file.read_text())
            # While the handler burns a core, the API answers at once and other jobs run.
            slowest = 0.0
            for _ in range(10):
                started = time.monotonic()
                assert http.get("/health").status_code == 200
                slowest = max(slowest, time.monotonic() - started)
            ping = http.post("/jobs", json={"type": "ping"}).json()["job_id"]
            assert http.get(f"/jobs/{ping}", params={"wait": "5s"}).json()["result"] == "pong"
            job = http.get(f"/jobs/{job_id}", params={"wait": "10s"}).json()
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        node.send_signal(signal.SIGTERM)
        assert node.wait_exit(20) == 0
    assert slowest < 0.5
    assert job["status"] == "failed"
    assert job["error"] == {"message": "timed out after 1s", "type": "TimeoutError"}
    assert not _alive(pid), "the runaway handler's process still runs"
