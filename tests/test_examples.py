"""The examples are run as real programs, so they cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from _server import ServerProcess

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_embed_example_runs_every_job_to_completion() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "embed.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("resize")
    assert "completed" in lines[0]
    assert "{'width': 512}" in lines[0]
    assert lines[1].startswith("flaky")
    assert "attempts=3" in lines[1]
    assert "'succeeded on attempt 3'" in lines[1]
    assert lines[2].startswith("checksum")
    assert f"result={sum(b'hello')}" in lines[2]
    assert lines[3] == "submitted=3 completed=3 retried=2 failed=0"


def _run(name: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_isolated_example_kills_the_job_that_overruns() -> None:
    assert _run("isolated.py") == [
        "10000: completed 1229",
        "1000000000: failed timed out after 1s",
    ]


def test_tracing_example_prints_attempt_spans_under_the_submit_span() -> None:
    assert _run("tracing.py") == [
        "submit: UNSET",
        "trio_tasks.run report (child of submit): ERROR",
        "trio_tasks.run report (child of submit): UNSET",
    ]


def test_limits_example_runs_pings_past_held_back_reports() -> None:
    assert _run("limits.py") == [
        "ping: pong while reports running: 2",
        "limits: {'concurrency': 2, 'rate': '10/s', 'running': 2, 'held': 4}",
        "reports: ['report 0', 'report 1', 'report 2', 'report 3', 'report 4', 'report 5']",
        "limits: {'concurrency': 2, 'rate': '10/s', 'running': 0, 'held': 0}",
    ]


def test_follow_job_example_prints_the_events_of_a_job() -> None:
    tests = Path(__file__).parent
    env = {"TASKS_APP": "events_app:registry", "PYTHONPATH": str(tests)}
    with ServerProcess(env=env) as node:
        url = node.wait_ready()
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "follow_job.py"), "--url", url, "--type", "progress"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("submitted ")
    # The job may have run before the stream opened: its first state is then already final.
    assert lines[1].startswith("state ")
    assert lines[-2:] == ["state completed (attempt 1 of 1)", "end completed"]


def test_watch_failures_example_prints_each_failed_job_once() -> None:
    tests = Path(__file__).parent
    env = {"TASKS_APP": "events_app:registry", "PYTHONPATH": str(tests)}
    with ServerProcess(env=env) as node:
        url = node.wait_ready()
        watcher = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "watch_failures.py"), "--url", url, "--count", "150"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert watcher.stdout is not None
            assert watcher.stdout.readline() == "watching\n"
            # 150 failures at once (more than a tick takes when they fail together: the
            # example then reads the failed jobs again), one that completes.
            jobs = [{"type": "progress", "payload": {"fail": True}}] * 150
            jobs.append({"type": "progress"})
            body = json.dumps(jobs).encode()
            submit = urllib.request.Request(
                f"{url}/jobs/batch", body, {"Content-Type": "application/json"}, method="POST"
            )
            with urllib.request.urlopen(submit, timeout=10) as answer:
                ids = [job["job_id"] for job in json.loads(answer.read())["jobs"]]
            out, err = watcher.communicate(timeout=60)
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
    assert watcher.returncode == 0, err
    lines = out.splitlines()
    assert sorted(line.split()[1] for line in lines) == sorted(ids[:150])
    assert {line.split(" ", 2)[2] for line in lines} == {"progress: RuntimeError: asked to fail"}


def test_the_in_process_follow_example_sees_every_state_and_progress() -> None:
    assert _run("follow_in_process.py") == [
        "state pending",
        "state running",
        "progress 33%",
        "progress 67%",
        "progress 100%",
        "state completed",
        "result {'rows': 3}",
    ]
