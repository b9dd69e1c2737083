"""Handlers: process isolation that really stops runaway code, threads counted when they outlive
their job, middleware and submit hooks (issue 10)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_tasks
from trio_tasks import JobContext, JobStatus, TaskRegistry, open_processor

LIMIT = 30


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie does not count: it burns nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


async def _pid_from(path: Path) -> int:
    """The pid another process writes to ``path`` (no event can cross from it: poll)."""
    file = trio.Path(path)
    while not await file.exists() or not await file.read_text():  # noqa: ASYNC110
        await trio.sleep(0.02)
    return int(await file.read_text())


# -- process isolation -----------------------------------------------------------------------


async def test_a_busy_loop_is_killed_at_its_timeout_and_the_node_goes_on(tmp_path: Path) -> None:
    from isolated_app import registry

    pid_file = tmp_path / "pid"
    with trio.fail_after(LIMIT):
        async with open_processor(registry, workers=3) as processor:
            spinning = await processor.submit("spin", {"pid_file": str(pid_file)})
            pid = await _pid_from(pid_file)
            # Meanwhile the node answers and runs other jobs, isolated or not.
            pong = await processor.wait((await processor.submit("ping")).id)
            assert pong.result == "pong"
            done = await processor.wait(spinning.id)
            # The pool replaced the killed process: the next isolated job runs.
            squared = await processor.wait((await processor.submit("square", {"n": 7})).id)
            for _ in range(100):
                if not _alive(pid):
                    break
                await trio.sleep(0.02)
    assert done.status is JobStatus.FAILED
    assert done.error is not None
    assert done.error.message == "timed out after 1s"
    assert not _alive(pid), "the timed-out process is still running"
    assert squared.status is JobStatus.COMPLETED
    assert squared.result["square"] == 49
    assert squared.result["pid"] != pid


async def test_cancelling_a_running_isolated_job_kills_its_process(tmp_path: Path) -> None:
    from isolated_app import registry

    pid_file = tmp_path / "pid"
    with trio.fail_after(LIMIT):
        async with open_processor(registry, workers=2) as processor:
            job = await processor.submit("nap", {"pid_file": str(pid_file), "seconds": 20})
            pid = await _pid_from(pid_file)
            await processor.cancel(job.id)
            done = await processor.wait(job.id)
            for _ in range(100):
                if not _alive(pid):
                    break
                await trio.sleep(0.02)
    assert done.status is JobStatus.CANCELLED
    assert not _alive(pid)


@pytest.mark.parametrize(
    ("job_type", "error_type", "message"),
    [
        ("crash", "ProcessDied", "the handler's process died"),
        ("not_json", "PermanentError", "result is not JSON-serialisable"),
        ("exits", "SystemExit", "leaving"),
        ("odd_error", "_Unpicklable", "cannot cross as it is"),
    ],
)
async def test_what_cannot_cross_or_kills_the_process_is_a_failed_attempt(
    job_type: str, error_type: str, message: str
) -> None:
    from isolated_app import registry

    with trio.fail_after(LIMIT):
        async with open_processor(registry, workers=2) as processor:
            job = await processor.wait((await processor.submit(job_type)).id)
            after = await processor.wait((await processor.submit("square", {"n": 3})).id)
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.type == error_type
    assert job.error.message.startswith(message)
    assert after.result["square"] == 9


async def test_a_handler_defined_in_a_function_cannot_cross_and_says_so() -> None:
    tasks = TaskRegistry()

    @tasks.task("local", isolate="process", retries=3)
    def local(ctx: Any) -> int:
        return 1

    with trio.fail_after(LIMIT):
        async with open_processor(tasks, workers=1) as processor:
            job = await processor.wait((await processor.submit("local")).id)
    assert job.status is JobStatus.FAILED
    assert job.attempts == 1  # permanent: retrying cannot help
    assert job.error is not None
    assert "needs a module-level function" in job.error.message


def test_isolation_is_refused_for_async_handlers_and_unknown_modes() -> None:
    tasks = TaskRegistry()

    async def handler(ctx: JobContext) -> None:
        pass

    with pytest.raises(trio_tasks.InvalidValue, match="needs a plain def handler"):
        tasks.register("a", handler, isolate="process")
    with pytest.raises(trio_tasks.InvalidValue, match="must be 'thread' or 'process'"):
        tasks.register("b", lambda ctx: None, isolate="vm")


# -- threads ---------------------------------------------------------------------------------


async def test_a_stuck_thread_is_counted_and_others_still_run() -> None:
    tasks = TaskRegistry()
    release = trio.Event()
    token = trio.lowlevel.current_trio_token()

    @tasks.task("stuck", timeout="200ms", retries=0)
    def stuck(ctx: JobContext) -> None:
        trio.from_thread.run_sync(lambda: None, trio_token=token)
        while not release.is_set():
            time.sleep(0.01)

    @tasks.task("quick")
    def quick(ctx: JobContext) -> str:
        return "done"

    with trio.fail_after(LIMIT):
        async with open_processor(
            tasks, workers=2, config=trio_tasks.Config(thread_workers=2)
        ) as p:
            job = await p.wait((await p.submit("stuck")).id)
            stats = await p.stats()
            # One of the two threads is stuck; the other still runs sync jobs.
            after = await p.wait((await p.submit("quick")).id)
            release.set()
            while (await p.stats()).threads_stuck:  # noqa: ASYNC110 - a thread ends it
                await trio.sleep(0.01)
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.type == "TimeoutError"
    assert stats.threads_stuck == 1
    assert after.result == "done"


# -- middleware and submit hooks -------------------------------------------------------------


async def test_middleware_wrap_every_run_in_order_and_see_the_outcome(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()
    seen: list[str] = []

    @tasks.middleware
    async def outer(ctx: JobContext, call_next: Any) -> Any:
        seen.append(f"outer in {ctx.job.type}")
        try:
            result = await call_next()
        except Exception as exc:
            seen.append(f"outer saw {type(exc).__name__}")
            raise
        seen.append(f"outer out {result}")
        return result

    @tasks.middleware
    async def inner(ctx: JobContext, call_next: Any) -> Any:
        seen.append("inner in")
        return await call_next()

    @tasks.task("ok")
    async def ok(ctx: JobContext) -> str:
        seen.append("handler")
        return "fine"

    @tasks.task("bad", retries=0)
    async def bad(ctx: JobContext) -> None:
        raise ValueError("no")

    async with open_processor(tasks, workers=1) as processor:
        good = await processor.wait((await processor.submit("ok")).id)
        failed = await processor.wait((await processor.submit("bad")).id)
    assert seen == [
        "outer in ok",
        "inner in",
        "handler",
        "outer out fine",
        "outer in bad",
        "inner in",
        "outer saw ValueError",
    ]
    assert good.result == "fine"
    assert failed.status is JobStatus.FAILED


async def test_a_middleware_that_swallows_an_exception_is_logged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    import logging

    import structlog

    capture = structlog.testing.CapturingLogger()
    logger = structlog.wrap_logger(
        capture, processors=[], wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG)
    )
    tasks = TaskRegistry()

    @tasks.middleware
    async def swallow(ctx: JobContext, call_next: Any) -> Any:
        try:
            return await call_next()
        except ValueError:
            return "hidden"

    @tasks.task("bad")
    async def bad(ctx: JobContext) -> None:
        raise ValueError("no")

    async with open_processor(tasks, workers=1, logger=logger) as processor:
        job = await processor.wait((await processor.submit("bad")).id)
    assert job.status is JobStatus.COMPLETED
    assert job.result == "hidden"
    events = [c.kwargs.get("event") for c in capture.calls if c.method_name == "warning"]
    assert "middleware suppressed the handler's exception" in events


async def test_submit_hooks_add_meta_that_travels_with_the_job(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()
    seen: list[dict[str, str]] = []

    @tasks.on_submit
    def stamp(job: trio_tasks.Job) -> None:
        job.meta["origin"] = "test"
        job.meta["count"] = 3  # type: ignore[assignment]  # made text on the way

    @tasks.on_submit
    def broken(job: trio_tasks.Job) -> None:
        raise RuntimeError("a hook bug must not refuse the job")

    @tasks.task("show")
    async def show(ctx: JobContext) -> None:
        seen.append(dict(ctx.job.meta))

    async with open_processor(tasks, workers=1) as processor:
        job = await processor.wait((await processor.submit("show")).id)
    assert job.meta == {"origin": "test", "count": "3"}
    assert seen == [{"origin": "test", "count": "3"}]


# -- quiet embedding -------------------------------------------------------------------------


def test_an_embedded_processor_prints_nothing_unless_logging_is_configured(tmp_path: Path) -> None:
    import subprocess
    import sys

    program = """
import trio, trio_tasks
tasks = trio_tasks.TaskRegistry()

@tasks.task("work", retries=0)
async def work(ctx):
    ctx.log.info("working")
    if ctx.payload.get("fail"):
        raise ValueError("boom")

async def main():
    async with trio_tasks.open_processor(tasks, workers=2) as p:
        for i in range(20):
            await p.wait((await p.submit("work", {"fail": i == 3})).id)

trio.run(main)
"""
    quiet = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert quiet.returncode == 0, quiet.stderr
    assert (quiet.stdout, quiet.stderr) == ("", "")
    # The host's ordinary logging set-up applies to trio-tasks like to any library.
    configured = subprocess.run(
        [
            sys.executable,
            "-c",
            "import logging; logging.basicConfig(level=logging.INFO)\n" + program,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert configured.returncode == 0, configured.stderr
    assert "INFO:trio_tasks:job completed" in configured.stderr
    assert "ERROR:trio_tasks:job failed" in configured.stderr
