"""``LOG_LEVEL`` / ``LOG_FORMAT``: structlog JSON lines (SPEC §8), console lines for people."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
import trio

import trio_tasks
from trio_tasks._hypercorn import HypercornLogger
from trio_tasks._logging import configure_logging

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """A stream to log into; the global logging setup is restored afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        yield stream
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_start_with_time_level_msg(out: io.StringIO) -> None:
    configure_logging("info", "json", out)
    structlog.get_logger("trio_tasks").info("job completed", job_id="j1", duration="1.2s")
    (record,) = lines(out)
    assert list(record)[:3] == ["time", "level", "msg"]
    assert RFC3339_UTC.match(record["time"])
    assert record["level"] == "info"
    assert record["msg"] == "job completed"
    assert (record["job_id"], record["duration"]) == ("j1", "1.2s")


def test_levels_below_the_configured_one_cost_nothing(out: io.StringIO) -> None:
    configure_logging("warning", "json", out)
    log = structlog.get_logger("trio_tasks")
    log.info("not shown")
    log.warning("shown")
    assert [r["msg"] for r in lines(out)] == ["shown"]
    assert not log.bind().is_enabled_for(logging.INFO)


def test_exceptions_become_a_field_of_the_json_line(out: io.StringIO) -> None:
    configure_logging("info", "json", out)
    try:
        raise ValueError("bad")
    except ValueError:
        structlog.get_logger().error("crashed", exc_info=True)
    (record,) = lines(out)
    assert "ValueError: bad" in record["exception"]


def test_standard_library_logs_join_the_json_lines(out: io.StringIO) -> None:
    configure_logging("info", "json", out)
    logging.getLogger("quart.app").error("Exception on request %s", "GET /x")
    logging.getLogger("quart.app").debug("hidden")
    (record,) = lines(out)
    assert record["msg"] == "Exception on request GET /x"
    assert record["level"] == "error"
    assert record["logger"] == "quart.app"


async def test_hypercorn_logs_go_through_structlog(out: io.StringIO) -> None:
    configure_logging("debug", "json", out)

    class _Config:
        access_log_format = ""

    logger = HypercornLogger(_Config())
    await logger.info("Running on %s (CTRL + C to quit)", "http://127.0.0.1:8080")
    scope = {"method": "POST", "path": "/jobs", "client": ("127.0.0.1", 5000)}
    await logger.access(scope, {"status": 202}, 0.0012)
    # hypercorn reports each request a second time without its response: not a second line.
    await logger.access(scope, None, 0.0013)
    first, second = lines(out)
    assert first["msg"] == "Running on http://127.0.0.1:8080 (CTRL + C to quit)"
    assert first["logger"] == "hypercorn"
    assert second["msg"] == "http request"
    assert (second["method"], second["path"], second["status"]) == ("POST", "/jobs", 202)
    assert second["client"] == "127.0.0.1:5000"


async def test_access_lines_are_debug_only(out: io.StringIO) -> None:
    configure_logging("info", "json", out)

    class _Config:
        access_log_format = ""

    await HypercornLogger(_Config()).access({"method": "GET", "path": "/"}, {"status": 200}, 0)
    assert out.getvalue() == ""


def test_console_format_is_for_people(out: io.StringIO) -> None:
    configure_logging("info", "console", out)
    structlog.get_logger().info("job started", job_id="j1")
    text = out.getvalue()
    assert "job started" in text
    assert "job_id=j1" in text
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z \[info", text)
    assert "\x1b[" not in text  # no colours when not writing to a terminal


@pytest.mark.usefixtures("out")  # restores the logging setup
async def test_a_lone_surrogate_is_escaped_not_a_crash(autojump_clock: trio.abc.Clock) -> None:
    # A client's job id "x\ud800y" used to raise UnicodeEncodeError from the "job started"
    # line inside a worker, which crashed the whole node. Such ids are refused now (see
    # test_http_api); an error message can still hold one.
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    configure_logging("info", "json", stream)
    tasks = trio_tasks.TaskRegistry()

    @tasks.task("echo", retries=0)
    async def echo(ctx: trio_tasks.JobContext) -> None:
        raise ValueError(ctx.payload["text"])

    async with trio_tasks.open_processor(tasks, workers=1) as processor:
        job = await processor.submit("echo", {"text": "bad \udc80 byte"}, job_id="x-y")
        done = await processor.wait(job.id)
    assert done.status is trio_tasks.JobStatus.FAILED
    records = [json.loads(line) for line in raw.getvalue().decode("utf-8").splitlines()]
    failed = next(r for r in records if r["msg"] == "job failed")
    assert failed["job_id"] == "x-y"
    assert failed["error"] == "bad \udc80 byte"


async def test_the_processor_logs_its_jobs_as_json(
    out: io.StringIO, autojump_clock: trio.abc.Clock
) -> None:
    # configure_logging must run before the processor is created: it decides once what it logs.
    configure_logging("debug", "json", out)
    async with trio_tasks.open_processor(trio_tasks.demo_registry(), workers=1) as processor:
        job = await processor.submit("email", priority="high")
        await processor.wait(job.id)
    records = {r["msg"]: r for r in lines(out)}
    assert records["job submitted"]["level"] == "debug"
    assert records["job submitted"]["priority"] == "high"
    started = records["job started"]
    assert (started["job_id"], started["job_type"], started["worker_id"]) == (
        job.id,
        "email",
        "worker-1",
    )
    assert started["attempt"] == 1
    assert records["job completed"]["duration"].endswith("s")


@pytest.mark.parametrize("probed", [False, True])
def test_structlog_imported_after_json_logging_was_configured_gets_the_same_lines(
    probed: bool,
) -> None:
    # A worker configures its JSON lines without importing structlog; a handler's module that
    # imports it later must still log through the configured pipeline (and the standard
    # library's records go into the same lines either way), also when something looked for
    # structlog first without importing it.
    probe = "importlib.util.find_spec('structlog')" if probed else "None"
    code = f"""if True:
        import importlib.util, io, logging, sys
        from trio_tasks._logging import configure_logging
        from trio_tasks._log import library_logger
        out = io.StringIO()
        configure_logging("info", "json", out)
        library_logger().info("from trio-tasks", n=1)
        logging.getLogger("app").warning("from logging %s", 2)
        before = "structlog" in sys.modules
        {probe}
        import structlog
        structlog.get_logger("app").info("from structlog", n=3)
        structlog.get_logger("app").debug("below the level")
        print(before)
        print(out.getvalue(), end="")
    """
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    first, *lines = done.stdout.splitlines()
    assert first == "False"
    records = [json.loads(line) for line in lines]
    assert [(r["level"], r["msg"]) for r in records] == [
        ("info", "from trio-tasks"),
        ("warning", "from logging 2"),
        ("info", "from structlog"),
    ]
    assert [list(r)[:3] for r in records] == [["time", "level", "msg"]] * 3
    assert records[1]["logger"] == "app"
    assert records[2]["n"] == 3
