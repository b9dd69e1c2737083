"""Incidents: nothing a handler does can stop a worker or a node, a blocked loop is named, and
every public async call is a Trio checkpoint (SPEC §3, issue 8).

The behavioural tests run on every broker (``make_processor``, see ``conftest.py``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import structlog
import trio
import trio.testing

from trio_tasks import (
    JobContext,
    JobStatus,
    Processor,
    TaskRegistry,
    open_processor,
)

MakeProcessor = Callable[..., AbstractAsyncContextManager[Processor]]
LIMIT = 20


def _capturing_logger() -> tuple[Any, structlog.testing.CapturingLogger]:
    capture = structlog.testing.CapturingLogger()
    logger = structlog.wrap_logger(
        capture, processors=[], wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG)
    )
    return logger, capture


class _Custom(BaseException):
    pass


def _group_of_system_exit() -> BaseException:
    return BaseExceptionGroup("handler nursery", [SystemExit(3)])


#: What a handler raises, and the error type and message the failed job then shows.
BASE_EXCEPTIONS = [
    (KeyboardInterrupt, "KeyboardInterrupt", "KeyboardInterrupt"),
    (lambda: SystemExit(2), "SystemExit", "2"),
    (lambda: GeneratorExit("closed"), "GeneratorExit", "closed"),
    (lambda: BaseException("bare"), "BaseException", "bare"),
    (lambda: _Custom("custom"), "_Custom", "custom"),
    (_group_of_system_exit, "SystemExit", "3"),
]


@pytest.mark.parametrize(("raise_it", "error_type", "message"), BASE_EXCEPTIONS)
async def test_any_base_exception_fails_the_attempt_and_the_worker_goes_on(
    make_processor: MakeProcessor,
    behaviour_clock: Any,
    raise_it: Callable[[], BaseException],
    error_type: str,
    message: str,
) -> None:
    tasks = TaskRegistry()
    attempts: list[int] = []

    @tasks.task("bad", retries=1)
    async def bad(ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        await trio.lowlevel.checkpoint()
        raise raise_it()

    @tasks.task("good")
    async def good(ctx: JobContext) -> str:
        return "fine"

    with trio.fail_after(LIMIT):
        async with make_processor(tasks, workers=1, retry_delay=0) as processor:
            bad_job = await processor.submit("bad")
            failed = await processor.wait(bad_job.id)
            after = await processor.wait((await processor.submit("good")).id)
            stats = await processor.stats()
    # Retries follow the usual rules: 1 retry, so 2 attempts; then the job fails.
    assert attempts == [1, 2]
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 2
    assert failed.error is not None
    assert (failed.error.type, failed.error.message) == (error_type, message)
    # The same single worker runs the next job.
    assert after.status is JobStatus.COMPLETED
    assert after.result == "fine"
    assert (stats.failed, stats.retried, stats.completed) == (1, 1, 1)


async def test_a_sync_handler_calling_sys_exit_fails_its_job() -> None:
    # The real clock: the handler runs in a thread, which an autojump clock would race.
    tasks = TaskRegistry()

    @tasks.task("exits", retries=0)
    def exits(ctx: JobContext) -> None:
        raise SystemExit("bye")

    with trio.fail_after(LIMIT):
        async with open_processor(tasks, workers=1) as processor:
            job = await processor.wait((await processor.submit("exits")).id)
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert (job.error.type, job.error.message) == ("SystemExit", "bye")


async def test_a_handler_that_blocks_past_its_timeout_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("blocks", timeout="1s", retries=0)
    async def blocks(ctx: JobContext) -> str:
        # A blocking call: five seconds pass and the handler never reaches a checkpoint.
        autojump_clock.jump(5)
        return "too late"

    async with open_processor(tasks, workers=1) as processor:
        job = await processor.wait((await processor.submit("blocks")).id)
    assert job.status is JobStatus.FAILED
    assert job.result is None
    assert job.error is not None
    assert job.error.type == "TimeoutError"
    assert job.error.message.startswith("timed out after 1s (the handler returned after 5s")


async def test_a_handler_swallowing_its_cancellation_still_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("stubborn", timeout="1s", retries=0)
    async def stubborn(ctx: JobContext) -> str:
        # Swallowing the cancellation is wrong: the point of the test.
        with contextlib.suppress(trio.Cancelled):
            await trio.sleep(10)
        return "ignored my timeout"

    async with open_processor(tasks, workers=1) as processor:
        job = await processor.wait((await processor.submit("stubborn")).id)
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.type == "TimeoutError"


async def test_a_handler_turning_its_shutdown_cancellation_into_an_error_stops_cleanly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()
    started = trio.Event()

    @tasks.task("both")
    async def both(ctx: JobContext) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            # Replaces the cancellation of the node stopping with an error of its own.
            raise KeyboardInterrupt

    async with open_processor(tasks, workers=1, shutdown_timeout=1) as processor:
        job = await processor.submit("both")
        await started.wait()
    # The node stopped at the end of its grace period; the attempt counts as failed and the job
    # waits for its retry (abandoned with the memory broker, kept by a shared one).
    assert processor.abandoned == [job.id]
    stored = await processor.get(job.id)
    assert stored.status is JobStatus.SCHEDULED
    assert stored.error is not None
    assert stored.error.type == "KeyboardInterrupt"
    assert [w.state for w in processor.workers()] == ["stopped"]


async def test_a_cancellation_and_a_handler_error_together_hand_the_job_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()
    started = trio.Event()

    async def fails_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        finally:
            raise SystemExit(1)

    @tasks.task("grouped")
    async def grouped(ctx: JobContext) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fails_when_cancelled)
            nursery.start_soon(trio.sleep_forever)
            started.set()

    async with open_processor(tasks, workers=1, shutdown_timeout=1) as processor:
        job = await processor.submit("grouped")
        await started.wait()
    # Cancelled plus SystemExit in one group: the node is stopping, so the job goes back.
    assert processor.abandoned == [job.id]
    assert (await processor.get(job.id)).status is JobStatus.PENDING


# -- checkpoints -----------------------------------------------------------------------------


async def test_every_public_async_call_is_a_checkpoint(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    tasks = TaskRegistry()
    progress_checked = trio.Event()

    @tasks.task("report")
    async def report(ctx: JobContext) -> None:
        with trio.testing.assert_checkpoints():
            await ctx.set_progress(0.5)
        progress_checked.set()

    @tasks.task("later")
    async def later(ctx: JobContext) -> None:
        pass

    with trio.fail_after(LIMIT):
        async with make_processor(tasks, workers=1) as processor:
            with trio.testing.assert_checkpoints():
                job = await processor.submit("report")
            with trio.testing.assert_checkpoints():
                await processor.wait(job.id)
            assert progress_checked.is_set()
            with trio.testing.assert_checkpoints():
                await processor.wait(job.id)  # already final
            with trio.testing.assert_checkpoints():
                await processor.get(job.id)
            with trio.testing.assert_checkpoints():
                await processor.list_jobs(limit=5)
            with trio.testing.assert_checkpoints():
                await processor.stats()
            delayed = await processor.submit("later", delay="1h")
            with trio.testing.assert_checkpoints():
                await processor.cancel(delayed.id)


# -- the loop watchdog -----------------------------------------------------------------------


async def test_the_watchdog_names_the_job_that_blocks_the_event_loop() -> None:
    tasks = TaskRegistry()
    logger, capture = _capturing_logger()

    @tasks.task("freezer", timeout="100ms", retries=0)
    async def freezer(ctx: JobContext) -> str:
        time.sleep(0.4)  # noqa: ASYNC251 - the mistake the watchdog is for
        return "done"

    async with open_processor(
        tasks, workers=1, loop_block_warning="50ms", logger=logger
    ) as processor:
        job = await processor.submit("freezer")
        done = await processor.wait(job.id)
        await trio.sleep(0.1)  # the watchdog notices the loop is responsive again
    warnings = [c for c in capture.calls if c.method_name == "warning"]
    blocked = [
        c for c in warnings if c.kwargs["event"] == "a job's handler is blocking the event loop"
    ]
    assert len(blocked) == 1
    fields = blocked[0].kwargs
    assert (fields["job_id"], fields["job_type"], fields["worker_id"]) == (
        job.id,
        "freezer",
        "worker-1",
    )
    assert fields["blocked_for"] >= 0.05
    assert "test_incidents.py" in fields["where"]
    recovered = [c for c in warnings if c.kwargs["event"] == "event loop responsive again"]
    assert len(recovered) == 1
    assert recovered[0].kwargs["blocked_for"] >= 0.3
    # And the job's timeout holds, even though Trio could not interrupt it.
    assert done.status is JobStatus.FAILED
    assert done.error is not None
    assert done.error.type == "TimeoutError"


async def test_the_watchdog_stays_quiet_for_a_healthy_loop_and_can_be_turned_off() -> None:
    tasks = TaskRegistry()

    @tasks.task("polite")
    async def polite(ctx: JobContext) -> None:
        for _ in range(20):
            await trio.sleep(0.005)

    for setting, threads in (("50ms", 1), (0, 0)):
        logger, capture = _capturing_logger()
        async with open_processor(
            tasks, workers=2, loop_block_warning=setting, logger=logger
        ) as processor:
            jobs = [await processor.submit("polite") for _ in range(4)]
            for job in jobs:
                await processor.wait(job.id)
            watching = [t for t in threading.enumerate() if t.name == "trio-tasks loop watchdog"]
            assert len(watching) == threads
        assert [c for c in capture.calls if c.method_name == "warning"] == []
    # The thread ends with the processor.
    assert not [t for t in threading.enumerate() if t.name == "trio-tasks loop watchdog"]


# -- outcomes counted only when recorded -----------------------------------------------------


@pytest.mark.redis
async def test_counters_equal_what_redis_recorded_across_a_partition(
    redis_server_url: str, redis_url: str
) -> None:
    from redis_server import TcpProxy, address, through
    from test_redis_broker import node, raw_client, until

    from trio_tasks import RedisBroker
    from trio_tasks.brokers._redis_keys import RedisKeys
    from trio_tasks.brokers._redis_link import parse_redis_url

    keys = RedisKeys.for_namespace(parse_redis_url(redis_url).namespace or "")
    tasks = TaskRegistry()

    @tasks.task("work")
    async def work(ctx: JobContext) -> None:
        await trio.sleep(0.05)

    total = 30
    options: dict[str, Any] = {"lease": 1.0, "retry_cap": 0.1, "poll_interval": 0.1}
    proxy = TcpProxy(*address(redis_server_url))
    cut_logger, capture = _capturing_logger()
    with trio.fail_after(40):
        async with trio.open_nursery() as outer:
            port = await outer.start(proxy.run)
            async with (
                raw_client(redis_url) as redis,
                open_processor(
                    tasks,
                    broker=RedisBroker(through(redis_url, port), outcome_timeout=0.3, **options),
                    workers=3,
                    shutdown_timeout=5,
                    logger=cut_logger,
                ) as cut_off,
            ):
                for _ in range(total):
                    await cut_off.submit("work")
                await until(lambda: cut_off.counters()["completed"] >= 3)
                proxy.cut()  # outcomes give up; the leases expire; the jobs run again
                async with node(tasks, redis_url, workers=1, **options) as other:
                    await trio.sleep(1.5)
                    proxy.heal()

                    async def all_completed() -> bool:
                        return int(await redis.hget(keys.stats, "completed") or 0) >= total

                    await until(all_completed, timeout=30)
                    await trio.sleep(0.3)
                    counted = cut_off.counters()["completed"] + other.counters()["completed"]
                    recorded = int(await redis.hget(keys.stats, "completed") or 0)
            outer.cancel_scope.cancel()
    assert counted == recorded == total
    not_recorded = [
        c
        for c in capture.calls
        if str(c.kwargs.get("event", "")).startswith("outcome not recorded")
    ]
    assert not_recorded, "the partition should have cost at least one outcome"
