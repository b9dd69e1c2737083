"""The client commands (``submit``, ``status``, ``stats``) against a real server in this process.

The server runs in the test's nursery; each command runs in a thread, as it blocks on HTTP.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
import trio

import trio_tasks
from trio_tasks import Config, Processor
from trio_tasks.cli import main


@pytest.fixture
async def url() -> AsyncIterator[str]:
    config = Config(server_host="127.0.0.1", server_port=0, workers=2, retry_attempts=0)
    # Log lines would mix with the commands' output on the captured stdout: drop them.
    quiet = structlog.wrap_logger(structlog.ReturnLogger())
    registry = trio_tasks.demo_registry(min_duration=0, max_duration=0)
    processor = Processor(registry, config, logger=quiet)
    async with trio.open_nursery() as nursery:
        await nursery.start(processor.run)
        urls = await nursery.start(trio_tasks.serve, processor, config)
        yield urls[0]
        processor.shutdown(grace=0)


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """Run the command; return its status, its stdout as JSON (or None) and its stderr."""
    status = await trio.to_thread.run_sync(main, list(argv))
    out, err = capsys.readouterr()
    return status, json.loads(out) if out else None, err


async def test_submit_prints_the_servers_answer(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, answer, _ = await run(
        capsys, "submit", "email", "--priority", "high", "--payload", '{"to": "x"}', "--url", url
    )
    assert status == 0
    assert answer["status"] == "submitted"
    status, job, _ = await run(capsys, "status", answer["job_id"], "--url", url)
    assert status == 0
    assert job["id"] == answer["job_id"]
    assert (job["type"], job["priority"], job["payload"]) == ("email", "high", {"to": "x"})


async def test_submit_wait_prints_the_finished_job(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, job, _ = await run(
        capsys, "submit", "report", "--job-id", "r-1", "--timeout", "5s", "--wait", "--url", url
    )
    assert status == 0
    assert job["id"] == "r-1"
    assert job["status"] == "completed"
    assert job["timeout"] == 5.0
    assert job["result"]["simulated"] is True


async def test_submit_wait_exits_1_when_the_job_fails(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, job, _ = await run(
        capsys, "submit", "sync", "--payload", '{"fail": true}', "--wait", "--url", url
    )
    assert status == 1
    assert job["status"] == "failed"
    assert job["error"]["type"] == "SimulatedFailure"


async def test_stats_prints_the_seeds_fields(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    await run(capsys, "submit", "email", "--wait", "--url", url)
    status, stats, _ = await run(capsys, "stats", "--url", url)
    assert status == 0
    assert stats["jobs_submitted"] == 1
    assert stats["jobs_completed"] == 1
    assert stats["workers_active"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["submit", "email", "--retries", "1000"], "POST /jobs: HTTP 400: retries: expected"),
        (["submit", "email", "--priority", "asap"], "POST /jobs: HTTP 400: invalid priority"),
        (["status", "nope"], "GET /jobs/nope: HTTP 404: job 'nope' not found"),
    ],
)
async def test_an_error_answer_exits_1_with_the_servers_message(
    url: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = await run(capsys, *argv, "--url", url)
    assert status == 1
    assert out is None
    assert err.startswith(f"trio-tasks: {message}")
    assert len(err.splitlines()) == 1


async def test_an_unreachable_server_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with trio.socket.socket() as unused:
        await unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    status, _, err = await run(capsys, "stats", "--url", f"http://127.0.0.1:{port}")
    assert status == 1
    assert err.startswith(f"trio-tasks: cannot reach http://127.0.0.1:{port}: ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--payload", "{oops"], "--payload: malformed JSON"),
        (["--payload", "[1]"], "--payload: expected a JSON object"),
        (["--retries", "lots"], "--retries: expected an integer >= 0"),
    ],
)
async def test_bad_submit_arguments_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, _, err = await run(capsys, "submit", "email", *argv, "--url", "http://127.0.0.1:9")
    assert status == 2
    assert err.startswith(f"trio-tasks: error: {message}")


@pytest.mark.parametrize("bad", ["notaurl", "localhost:8080", "ftp://127.0.0.1:9"])
def test_a_url_that_is_not_http_exits_2_without_a_traceback(
    capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    assert main(["stats", "--url", bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"trio-tasks: error: --url={bad!r}: expected http://host:port")
    assert len(err.splitlines()) == 1


def test_the_url_defaults_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIO_TASKS_URL", "http://127.0.0.1:9")
    assert main(["stats"]) == 1
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err
