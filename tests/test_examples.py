"""The examples are run as real programs, so they cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
