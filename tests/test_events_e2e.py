"""The event streams of real ``trio-tasks serve`` processes: across two nodes sharing a Redis
(a client of one follows a job running on the other), the end of every stream at SIGTERM, and
``trio-tasks submit --wait`` / ``status --follow`` reading them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from _server import ROOT, ServerProcess

from trio_tasks._event_json import SUMMARY_FIELDS

pytestmark = pytest.mark.slow

TESTS = Path(__file__).parent
ENV = {
    "TASKS_APP": "events_app:registry",
    "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p),
}


def events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """``(name, data)`` of each event of a streaming response; ``("comment", text)``."""
    name, data = "", ""
    for line in response.iter_lines():
        if line.startswith(":"):
            yield ("comment", line[1:].strip())
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and name:
            yield (name, json.loads(data))
            name, data = "", ""


class Follower:
    """Reads one stream in a thread, keeping every event; ``ended`` once the stream ended."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[str, Any]] = []
        self.ended = threading.Event()
        self.error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            with httpx.stream("GET", self.url, timeout=30) as response:
                assert response.status_code == 200, response.read()
                for event in events(response):
                    with self._changed:
                        self.seen.append(event)
                        self._changed.notify_all()
        except BaseException as exc:
            self.error = exc
        finally:
            with self._changed:
                self.ended.set()
                self._changed.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 20) -> tuple[str, Any]:
        """The first event seen for which ``predicate(name, data)`` holds."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: any(predicate(*e) for e in self.seen) or self.ended.is_set(), timeout
            )
            for event in self.seen:
                if predicate(*event):
                    return event
        raise AssertionError(f"not seen (found={found}): {self.seen!r}, error={self.error!r}")

    def join(self, timeout: float = 20) -> None:
        assert self.ended.wait(timeout), self.seen
        assert self.error is None, self.error


@pytest.mark.redis
def test_a_client_of_one_node_follows_a_job_running_on_another(
    redis_url: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with ExitStack() as stack:
        # Node A runs no jobs: the job can only run on node B.
        a = stack.enter_context(
            ServerProcess(env={**ENV, "BROKER_URL": redis_url, "WORKER_NUM_WORKERS": "0"})
        )
        b = stack.enter_context(ServerProcess(env={**ENV, "BROKER_URL": redis_url}))
        a_url, b_url = a.wait_ready(20), b.wait_ready(20)
        # Every event of every job, whole (detail=full), on both nodes; summaries on node A.
        every_on_a = Follower(f"{a_url}/events?detail=full")
        every_on_b = Follower(f"{b_url}/events?detail=full")
        summaries_on_a = Follower(f"{a_url}/events")
        hello_a = every_on_a.wait_for(lambda name, data: name == "hello")[1]
        hello_b = every_on_b.wait_for(lambda name, data: name == "hello")[1]
        assert hello_a["node"] != hello_b["node"]
        # Node B publishes once it sees that node A follows events (within about a second):
        # a job run on B until node A's stream shows it.
        for _ in range(10):
            warm_up = httpx.post(f"{a_url}/jobs", json={"type": "progress"}).json()["job_id"]
            try:
                every_on_a.wait_for(
                    lambda name, data, w=warm_up: (
                        name == "state" and data["id"] == w and data["status"] == "completed"
                    ),
                    timeout=2,
                )
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("node B never published its events to node A")
        answer = httpx.post(
            f"{a_url}/jobs", json={"type": "progress", "payload": {"gate": str(gate)}}
        )
        job_id = answer.json()["job_id"]
        one_on_a = Follower(f"{a_url}/jobs/{job_id}/events")

        def progress(value: float) -> Any:
            return lambda name, data: name == "progress" and data["progress"] == value

        # Node B's progress reaches a client of node A.
        every_on_a.wait_for(progress(0.5))
        first = one_on_a.wait_for(lambda name, data: name == "state")[1]
        assert first["id"] == job_id
        gate.touch()
        one_on_a.join()
        names = [name for name, _ in one_on_a.seen if name != "comment"]
        assert names[-2:] == ["state", "end"]
        assert one_on_a.seen[-1] == ("end", {"job_id": job_id, "status": "completed"})
        final = one_on_a.seen[-2][1]
        assert final["status"] == "completed"
        assert final["result"] == {"done": True}
        assert final["worker_id"] is not None
        assert ("progress", {"job_id": job_id, "type": "progress", "priority": "normal",
                             "progress": 1.0}) in one_on_a.seen  # fmt: skip
        # Every node's /events: each event once (B's own events are not echoed back to B).
        for follower in (every_on_a, every_on_b):
            follower.wait_for(
                lambda name, data: (
                    name == "state" and data["id"] == job_id and data["status"] == "completed"
                )
            )
            mine = [
                (n, d)
                for n, d in follower.seen
                if n in ("state", "progress") and d.get("id", d.get("job_id")) == job_id
            ]
            assert [n for n, _ in mine].count("progress") == 2, mine
            statuses = [d["status"] for n, d in mine if n == "state"]
            # A node may hear the other's newer state before its own older one and skips the
            # older then (never shown late): node B its own "running" before node A's
            # "pending"; node A too, when B starts the job before A's submission returns.
            expected = [["pending", "running", "completed"], ["running", "completed"]]
            assert statuses in expected, statuses
        # The default stream of node A: summaries of node B's states, never one going back.
        summaries_on_a.wait_for(
            lambda name, data: (
                name == "state" and data["id"] == job_id and data["status"] == "completed"
            )
        )
        summaries = [d for n, d in summaries_on_a.seen if n == "state" and d["id"] == job_id]
        assert all(tuple(d) == SUMMARY_FIELDS for d in summaries)
        order = ["pending", "running", "completed"]
        ranks = [order.index(d["status"]) for d in summaries]
        assert ranks == sorted(ranks), summaries
        assert summaries[-1]["progress"] == 1.0
        for node in (a, b):
            node.send_signal(signal.SIGTERM)
        for node in (a, b):
            assert node.wait_exit(20) == 0
        every_on_a.join()
        every_on_b.join()
        summaries_on_a.join()


def test_every_stream_ends_cleanly_at_sigterm(tmp_path: Path) -> None:
    env = {**ENV, "SHUTDOWN_TIMEOUT": "1s"}
    with ServerProcess(env=env) as node:
        url = node.wait_ready()
        every = Follower(f"{url}/events")
        every.wait_for(lambda name, data: name == "hello")
        gated = httpx.post(
            f"{url}/jobs", json={"type": "progress", "payload": {"gate": str(tmp_path / "never")}}
        )
        job_id = gated.json()["job_id"]
        one = Follower(f"{url}/jobs/{job_id}/events")
        one.wait_for(lambda name, data: name == "state" and data["status"] == "running")
        node.send_signal(signal.SIGTERM)
        assert node.wait_exit(20) == 0
        every.join()
        one.join()
        # The job did not end here: its stream ends without an end event.
        assert "end" not in [name for name, _ in one.seen]
        assert not [line for line in node.stderr_lines if "Traceback" in line]
        errors = [r for r in node.records if r["level"] in ("error", "critical")]
        assert errors == []


def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_tasks", *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def test_the_cli_follows_jobs_to_their_end(tmp_path: Path) -> None:
    with ServerProcess(env=ENV) as node:
        url = node.wait_ready()
        done = cli("submit", "progress", "--wait", url=url)
        assert done.returncode == 0, done.stderr
        job = json.loads(done.stdout)
        assert (job["status"], job["result"]) == ("completed", {"done": True})
        # stderr is not a terminal: a plain line per change (the job may have ended already).
        assert done.stderr.splitlines()[-1] == f"{job['id']}: completed"

        failed = cli("submit", "progress", "--payload", '{"fail": true}', "--wait", url=url)
        assert failed.returncode == 1
        assert json.loads(failed.stdout)["status"] == "failed"

        gate = tmp_path / "gate"
        submitted = cli("submit", "progress", "--payload", json.dumps({"gate": str(gate)}), url=url)
        job_id = json.loads(submitted.stdout)["job_id"]
        follow = subprocess.Popen(
            [sys.executable, "-m", "trio_tasks", "status", job_id, "--follow", "--url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert follow.stderr is not None
        first = follow.stderr.readline()
        assert first.startswith(f"{job_id}: "), first
        gate.touch()
        out, err = follow.communicate(timeout=30)
        assert follow.returncode == 0, err
        assert json.loads(out)["status"] == "completed"
        assert "progress: 1.0" in err

        missing = cli("status", "no-such-job", "--follow", url=url)
        assert missing.returncode == 1
        assert "404" in missing.stderr
