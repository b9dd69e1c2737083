"""The timing rules of the job engine (SPEC §4) on the memory broker, under the autojump clock.

Every timer of the engine follows Trio's clock, so these tests assert exact virtual times: a job
delayed by 60 s starts at t=60, a 5 s timeout fails at t=5, a retry waits exactly its jittered
delay.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
import trio
import trio.testing

from trio_tasks import (
    Config,
    InvalidValue,
    Job,
    JobContext,
    JobError,
    JobNotFound,
    JobStatus,
    Percentiles,
    PermanentError,
    Priority,
    Processor,
    QueueFull,
    Retry,
    ShuttingDown,
    TaskRegistry,
    open_processor,
)
from trio_tasks._backoff import backoff_cap, backoff_delay
from trio_tasks._job import format_time
from trio_tasks.http import create_app

EXACT = 1e-6  # wall timestamps are POSIX seconds near 1.7e9: compare to a microsecond


def at(seconds: float) -> Any:
    """``pytest.approx`` for a virtual time or a duration that the rules make exact."""
    return pytest.approx(seconds, abs=EXACT)


class Timeline:
    """Records each job event with the virtual time it happened at."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str, int]] = []

    def __call__(self, event: str, job: Job) -> None:
        self.events.append((trio.current_time(), event, job.id, job.attempts))

    def of(self, job_id: str, event: str | None = None) -> list[tuple[float, str, int]]:
        return [
            (t, e, n) for t, e, i, n in self.events if i == job_id and (event is None or e == event)
        ]

    def times(self, job_id: str, event: str) -> list[float]:
        return [t for t, _, _ in self.of(job_id, event)]


def capturing_logger() -> tuple[Any, structlog.testing.CapturingLogger]:
    """A structlog logger at debug level whose calls are kept in ``.calls``."""
    capture = structlog.testing.CapturingLogger()
    logger = structlog.wrap_logger(
        capture, processors=[], wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG)
    )
    return logger, capture


# -- delayed jobs ----------------------------------------------------------------------------


async def test_a_delayed_job_waits_scheduled_and_starts_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()
    started: list[float] = []

    @tasks.task("tick")
    async def tick(ctx: JobContext) -> None:
        started.append(trio.current_time())

    async with open_processor(tasks, workers=2) as processor:
        t0 = trio.current_time()
        job = await processor.submit("tick", delay=60)
        assert job.status is JobStatus.SCHEDULED
        assert job.run_at == at(job.created_at + 60)
        await trio.sleep(59.999)
        assert (await processor.get(job.id)).status is JobStatus.SCHEDULED
        assert (await processor.stats()).scheduled == 1
        assert started == []
        done = await processor.wait(job.id)
    assert started == [at(t0 + 60)]
    assert done.status is JobStatus.COMPLETED
    assert done.started_at == at(done.created_at + 60)


async def test_delay_accepts_go_durations(autojump_clock: trio.testing.MockClock) -> None:
    tasks = TaskRegistry()
    started: list[float] = []

    @tasks.task("tick")
    async def tick(ctx: JobContext) -> None:
        started.append(trio.current_time())

    async with open_processor(tasks, workers=1) as processor:
        t0 = trio.current_time()
        job = await processor.submit("tick", delay="1h30m")
        await processor.wait(job.id)
    assert started == [at(t0 + 5400)]


async def test_run_at_starts_a_job_at_that_time(autojump_clock: trio.testing.MockClock) -> None:
    tasks = TaskRegistry()
    started: dict[str, float] = {}

    @tasks.task("tick")
    async def tick(ctx: JobContext) -> None:
        started[ctx.payload["name"]] = trio.current_time()

    async with open_processor(tasks, workers=1) as processor:
        t0 = trio.current_time()
        now = (await processor.submit("tick", {"name": "now"})).created_at
        posix = await processor.submit("tick", {"name": "posix"}, run_at=now + 90)
        text = await processor.submit("tick", {"name": "text"}, run_at=format_time(now + 120))
        past = await processor.submit("tick", {"name": "past"}, run_at=now - 3600)
        assert (posix.status, text.status, past.status) == (
            JobStatus.SCHEDULED,
            JobStatus.SCHEDULED,
            JobStatus.PENDING,
        )
        for job in (posix, text, past):
            await processor.wait(job.id)
        stats = await processor.stats()
    assert started["now"] == at(t0)
    assert started["past"] == at(t0)
    assert started["posix"] == at(t0 + 90)
    assert started["text"] == at(t0 + 120)
    # Nobody waited in the queue: a job in the past was runnable from its submission on.
    assert stats.queue_wait.max == at(0)


async def test_due_delayed_jobs_run_by_priority(autojump_clock: trio.testing.MockClock) -> None:
    tasks = TaskRegistry()
    order: list[str] = []

    @tasks.task("tick")
    async def tick(ctx: JobContext) -> None:
        order.append(ctx.payload["name"])

    async with open_processor(tasks, workers=1) as processor:
        ids = [
            (await processor.submit("tick", {"name": name}, priority=prio, delay=10)).id
            for name, prio in [("low", "low"), ("normal", "normal"), ("urgent", "urgent")]
        ]
        for job_id in ids:
            await processor.wait(job_id)
    assert order == ["urgent", "normal", "low"]


# -- timeouts --------------------------------------------------------------------------------


async def test_a_timeout_fails_the_attempt_at_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()
    cancelled_at: list[float] = []

    @tasks.task("stuck")
    async def stuck(ctx: JobContext) -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled_at.append(trio.current_time())

    async with open_processor(tasks, workers=1, retry_attempts=0) as processor:
        t0 = trio.current_time()
        job = await processor.submit("stuck", timeout=5)
        done = await processor.wait(job.id)
        failed_at = trio.current_time()
    assert cancelled_at == [at(t0 + 5)]
    assert failed_at == at(t0 + 5)
    assert done.status is JobStatus.FAILED
    assert done.attempts == 1
    assert done.error is not None
    assert (done.error.message, done.error.type) == ("timed out after 5s", "TimeoutError")
    assert done.completed_at == at(done.created_at + 5)


async def test_timeouts_are_retried_with_backoff_then_fail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("stuck")
    async def stuck(ctx: JobContext) -> None:
        await trio.sleep_forever()

    timeline = Timeline()
    async with open_processor(
        tasks,
        workers=1,
        job_timeout="5s",
        retry_attempts=2,
        retry_delay="1s",
        retry_max_delay="10s",
        rng=random.Random(42),
    ) as processor:
        processor.add_listener(timeline)
        t0 = trio.current_time()
        job = await processor.submit("stuck")
        done = await processor.wait(job.id)
    expected = random.Random(42)
    d1 = backoff_delay(1, 1.0, 10.0, expected)
    d2 = backoff_delay(2, 1.0, 10.0, expected)
    assert timeline.times(job.id, "started") == [at(t0), at(t0 + 5 + d1), at(t0 + 10 + d1 + d2)]
    assert timeline.times(job.id, "retried") == [at(t0 + 5), at(t0 + 10 + d1)]
    assert timeline.times(job.id, "failed") == [at(t0 + 15 + d1 + d2)]
    assert done.status is JobStatus.FAILED
    assert (done.attempts, done.max_attempts) == (3, 3)
    assert done.error is not None
    assert done.error.message == "timed out after 5s"


async def test_per_job_timeout_beats_per_type_beats_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("plain")
    async def plain(ctx: JobContext) -> None:
        await trio.sleep_forever()

    @tasks.task("typed", timeout="10s")
    async def typed(ctx: JobContext) -> None:
        await trio.sleep_forever()

    timeline = Timeline()
    async with open_processor(tasks, workers=4, job_timeout="1m40s", retry_attempts=0) as p:
        p.add_listener(timeline)
        t0 = trio.current_time()
        jobs = {
            "default": await p.submit("plain"),
            "type": await p.submit("typed"),
            "job": await p.submit("typed", timeout="2.5s"),
            "job-seconds": await p.submit("plain", timeout=7),
        }
        done = {name: await p.wait(job.id) for name, job in jobs.items()}
    assert {name: job.timeout for name, job in jobs.items()} == {
        "default": 100.0,
        "type": 10.0,
        "job": 2.5,
        "job-seconds": 7.0,
    }
    messages = {name: job.error.message if job.error else None for name, job in done.items()}
    assert messages == {
        "default": "timed out after 1m40s",
        "type": "timed out after 10s",
        "job": "timed out after 2.5s",
        "job-seconds": "timed out after 7s",
    }
    for name, seconds in [("default", 100), ("type", 10), ("job", 2.5), ("job-seconds", 7)]:
        assert timeline.times(jobs[name].id, "failed") == [at(t0 + seconds)]


async def test_the_timeout_counts_from_the_start_of_the_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("slow", timeout="5s", retries=0)
    async def slow(ctx: JobContext) -> None:
        await trio.sleep(ctx.payload["seconds"])

    timeline = Timeline()
    async with open_processor(tasks, workers=1) as processor:
        processor.add_listener(timeline)
        t0 = trio.current_time()
        first = await processor.submit("slow", {"seconds": 4})
        second = await processor.submit("slow", {"seconds": 6})
        done = [await processor.wait(first.id), await processor.wait(second.id)]
    assert [job.status for job in done] == [JobStatus.COMPLETED, JobStatus.FAILED]
    # The second job waited 4 s in the queue, then had its full 5 s.
    assert timeline.times(second.id, "started") == [at(t0 + 4)]
    assert timeline.times(second.id, "failed") == [at(t0 + 9)]


async def test_a_job_finishing_before_its_timeout_completes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("slow", timeout="5s")
    async def slow(ctx: JobContext) -> str:
        await trio.sleep(4.999)
        return "in time"

    async with open_processor(tasks, workers=1) as processor:
        done = await processor.wait((await processor.submit("slow")).id)
    assert done.status is JobStatus.COMPLETED
    assert done.result == "in time"
    assert done.attempts == 1


# -- backoff ---------------------------------------------------------------------------------


async def test_retry_delays_are_the_seeded_full_jitter_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("broken", retries=8)
    async def broken(ctx: JobContext) -> None:
        raise ValueError("no")

    timeline = Timeline()
    async with open_processor(
        tasks, workers=1, retry_delay=1, retry_max_delay=20, rng=random.Random(2024)
    ) as processor:
        processor.add_listener(timeline)
        job = await processor.submit("broken")
        done = await processor.wait(job.id)
    starts = timeline.times(job.id, "started")
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    rng = random.Random(2024)
    assert gaps == [at(backoff_delay(n, 1.0, 20.0, rng)) for n in range(1, 9)]
    for n, gap in enumerate(gaps, start=1):
        assert 0 <= gap <= min(2 ** (n - 1), 20) + EXACT
    assert done.attempts == 9
    assert done.status is JobStatus.FAILED


async def test_retry_delays_stay_within_their_jitter_bounds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("flaky", retries=3)
    async def flaky(ctx: JobContext) -> None:
        if ctx.attempt <= 3:
            raise ValueError(f"attempt {ctx.attempt}")

    timeline = Timeline()
    async with open_processor(
        tasks,
        workers=200,
        max_concurrency=200,
        retry_delay="10s",
        retry_max_delay="25s",
        rng=random.Random(5),
    ) as processor:
        processor.add_listener(timeline)
        ids = [(await processor.submit("flaky")).id for _ in range(200)]
        for job_id in ids:
            assert (await processor.wait(job_id)).attempts == 4
    gaps: dict[int, list[float]] = {1: [], 2: [], 3: []}
    for job_id in ids:
        starts = timeline.times(job_id, "started")
        for n in (1, 2, 3):
            gaps[n].append(starts[n] - starts[n - 1])
    for n, observed in gaps.items():
        cap = backoff_cap(n, 10.0, 25.0)
        assert cap == [10.0, 20.0, 25.0][n - 1]
        assert all(-EXACT <= gap <= cap + EXACT for gap in observed)
        # Full jitter: the whole range is used, not a fixed delay.
        assert min(observed) < 0.1 * cap
        assert max(observed) > 0.9 * cap


async def test_retry_with_a_delay_waits_exactly_that_long(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("later", retries=2)
    async def later(ctx: JobContext) -> str:
        if ctx.attempt == 1:
            raise Retry(delay=2.5)
        if ctx.attempt == 2:
            raise Retry()  # normal backoff
        return "done"

    timeline = Timeline()
    async with open_processor(
        tasks, workers=1, retry_delay="1m", retry_max_delay="1h", rng=random.Random(9)
    ) as processor:
        processor.add_listener(timeline)
        t0 = trio.current_time()
        job = await processor.submit("later")
        done = await processor.wait(job.id)
    backoff = backoff_delay(2, 60.0, 3600.0, random.Random(9))
    assert timeline.times(job.id, "started") == [at(t0), at(t0 + 2.5), at(t0 + 2.5 + backoff)]
    assert done.status is JobStatus.COMPLETED
    assert done.attempts == 3


async def test_a_waiting_retry_holds_no_worker(autojump_clock: trio.testing.MockClock) -> None:
    tasks = TaskRegistry()
    started: dict[str, list[float]] = {}

    @tasks.task("step")
    async def step(ctx: JobContext) -> None:
        started.setdefault(ctx.payload["name"], []).append(trio.current_time())
        if ctx.payload["name"] == "retrying" and ctx.attempt == 1:
            raise Retry(delay=100)
        await trio.sleep(1)

    async with open_processor(tasks, workers=1) as processor:
        t0 = trio.current_time()
        first = await processor.submit("step", {"name": "retrying"})
        await trio.testing.wait_all_tasks_blocked()
        assert (await processor.get(first.id)).status is JobStatus.SCHEDULED
        second = await processor.submit("step", {"name": "other"})
        await processor.wait(second.id)
        await processor.wait(first.id)
    assert started == {"retrying": [at(t0), at(t0 + 100)], "other": [at(t0)]}


# -- cancellation on the memory broker -------------------------------------------------------


async def test_jobs_cancelled_before_a_waking_worker_runs_free_their_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A worker parked on an empty queue is handed the submission's token at once; submit ends
    # with a checkpoint, so Trio may run the worker before or after the cancel that follows.
    # Either way the job ends cancelled (a tombstone, or a cancelled scope), nothing crashes and
    # the slot of the bound is free again.
    tasks = TaskRegistry()
    order: list[str] = []

    @tasks.task("record")
    async def record(ctx: JobContext) -> None:
        await trio.sleep(1)
        order.append(ctx.payload["name"])

    async with open_processor(tasks, workers=1, max_concurrency=1) as processor:
        await trio.testing.wait_all_tasks_blocked()
        for i in range(3):
            job = await processor.submit("record", {"name": f"cancelled-{i}"})
            await processor.cancel(job.id)
            assert (await processor.wait(job.id)).status is JobStatus.CANCELLED
        last = await processor.submit("record", {"name": "last"})
        assert (await processor.wait(last.id)).status is JobStatus.COMPLETED
        again = await processor.submit("record", {"name": "again"})
        await processor.wait(again.id)
        stats = await processor.stats()
    assert order == ["last", "again"]
    assert (stats.cancelled, stats.completed, stats.queue_size) == (3, 2, 0)


async def test_cancelling_a_running_job_stops_it_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("long")
    async def long(ctx: JobContext) -> None:
        await trio.sleep(1000)

    async with open_processor(tasks, workers=1) as processor:
        t0 = trio.current_time()
        job = await processor.submit("long")
        await trio.sleep(10)
        await processor.cancel(job.id)
        done = await processor.wait(job.id)
        ended = trio.current_time()
    assert ended == at(t0 + 10)
    assert done.status is JobStatus.CANCELLED
    assert done.completed_at == at(done.created_at + 10)


async def test_errors_raised_in_a_handlers_nursery_keep_their_meaning(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    async def raise_in_child(exc: Exception) -> None:
        async def child() -> None:
            raise exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            nursery.start_soon(trio.sleep_forever)

    @tasks.task("permanent", retries=3)
    async def permanent(ctx: JobContext) -> None:
        await raise_in_child(PermanentError("bad input"))

    @tasks.task("retry", retries=1)
    async def retry(ctx: JobContext) -> str:
        if ctx.attempt == 1:
            await raise_in_child(Retry(delay=7))
        return "second time"

    @tasks.task("plain", retries=0)
    async def plain(ctx: JobContext) -> None:
        await raise_in_child(KeyError("missing"))

    timeline = Timeline()
    async with open_processor(tasks, workers=3, retry_delay=0) as processor:
        processor.add_listener(timeline)
        t0 = trio.current_time()
        jobs = [await processor.submit(name) for name in ("permanent", "retry", "plain")]
        perm, again, plain_done = [await processor.wait(job.id) for job in jobs]
    assert perm.status is JobStatus.FAILED
    assert perm.attempts == 1
    assert perm.error == JobError("bad input", "PermanentError")
    assert timeline.times(again.id, "started") == [at(t0), at(t0 + 7)]
    assert again.result == "second time"
    assert plain_done.error == JobError("'missing'", "KeyError")


# -- sync handlers ---------------------------------------------------------------------------


async def test_sync_handlers_run_in_a_worker_thread(mock_clock: trio.testing.MockClock) -> None:
    # A stopped MockClock: with the autojump clock, virtual time would race the real thread to
    # its timeout.
    tasks = TaskRegistry()
    loop_thread = threading.get_ident()
    threads: list[int] = []

    @tasks.task("checksum")
    def checksum(ctx: JobContext) -> int:
        threads.append(threading.get_ident())
        trio.from_thread.run(ctx.set_progress, 0.5)
        return sum(ctx.payload["data"].encode())

    @tasks.task("broken_sync", retries=1)
    def broken_sync(ctx: JobContext) -> None:
        raise OSError(f"disk full on attempt {ctx.attempt}")

    async with open_processor(tasks, workers=2, retry_delay=0) as processor:
        done = await processor.wait((await processor.submit("checksum", {"data": "hello"})).id)
        broken = await processor.wait((await processor.submit("broken_sync")).id)
    assert done.status is JobStatus.COMPLETED
    assert done.result == sum(b"hello")
    assert done.progress == 0.5
    assert threads
    assert loop_thread not in threads
    assert broken.status is JobStatus.FAILED
    assert broken.attempts == 2
    assert broken.error is not None
    assert (broken.error.message, broken.error.type) == ("disk full on attempt 2", "OSError")


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """A thread gate opened at teardown whatever happens, so no handler thread is left blocked."""
    event = threading.Event()
    yield event
    event.set()


async def test_a_timed_out_sync_handler_fails_and_its_thread_is_abandoned(
    gate: threading.Event, autojump_clock: trio.testing.MockClock
) -> None:
    tasks = TaskRegistry()
    finished = threading.Event()

    @tasks.task("blocking", timeout="5s", retries=0)
    def blocking(ctx: JobContext) -> str:
        gate.wait(30)
        finished.set()
        return "too late"

    @tasks.task("quick")
    async def quick(ctx: JobContext) -> str:
        return "quick"

    async with open_processor(tasks, workers=1) as processor:
        t0 = trio.current_time()
        job = await processor.submit("blocking")
        done = await processor.wait(job.id)
        assert trio.current_time() == at(t0 + 5)
        assert not finished.is_set()  # the thread still runs; the worker moved on
        assert (await processor.wait((await processor.submit("quick")).id)).result == "quick"
        gate.set()
        await trio.to_thread.run_sync(finished.wait, 10)
        after = await processor.get(job.id)
    assert done.status is JobStatus.FAILED
    assert done.error is not None
    assert done.error.message == "timed out after 5s"
    assert after.result is None  # the late return value is thrown away
    assert after.status is JobStatus.FAILED


async def test_cancelling_a_running_sync_handler_frees_its_worker_at_once(
    gate: threading.Event, mock_clock: trio.testing.MockClock
) -> None:
    tasks = TaskRegistry()
    entered = threading.Event()

    @tasks.task("blocking")
    def blocking(ctx: JobContext) -> None:
        entered.set()
        gate.wait(30)

    @tasks.task("quick")
    async def quick(ctx: JobContext) -> str:
        return "quick"

    async with open_processor(tasks, workers=1) as processor:
        job = await processor.submit("blocking")
        await trio.to_thread.run_sync(entered.wait, 10)
        assert (await processor.cancel(job.id)).status is JobStatus.RUNNING
        done = await processor.wait(job.id)
        assert (await processor.wait((await processor.submit("quick")).id)).result == "quick"
        gate.set()
    assert done.status is JobStatus.CANCELLED
    assert done.attempts == 1


# -- results ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [object(), {"when": {1, 2}}, [b"bytes"], float("nan"), {"x": float("inf")}, 10**5000],
    ids=["object", "set-in-dict", "bytes-in-list", "nan", "inf-in-dict", "int-5000-digits"],
)
async def test_a_result_that_is_not_json_fails_the_job_clearly(
    result: Any, autojump_clock: trio.testing.MockClock
) -> None:
    tasks = TaskRegistry()

    @tasks.task("odd", retries=3)
    async def odd(ctx: JobContext) -> Any:
        return result

    @tasks.task("fine")
    async def fine(ctx: JobContext) -> dict[str, Any]:
        return {"ok": [1, 2.5, None, "x"]}

    async with open_processor(tasks, workers=1) as processor:
        done = await processor.wait((await processor.submit("odd")).id)
        good = await processor.wait((await processor.submit("fine")).id)
    assert done.status is JobStatus.FAILED
    assert done.attempts == 1  # it would not change on a retry
    assert done.result is None
    assert done.error is not None
    assert done.error.message.startswith("result is not JSON-serialisable: ")
    assert good.result == {"ok": [1, 2.5, None, "x"]}


def _cycle() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


@pytest.mark.parametrize(
    "progress",
    [10**5000, float("nan"), _cycle(), {"at": object()}],
    ids=["int-5000-digits", "nan", "cycle", "object"],
)
async def test_a_progress_that_is_not_json_is_refused_and_the_api_still_answers(
    progress: Any, autojump_clock: trio.testing.MockClock
) -> None:
    tasks = TaskRegistry()
    refused: list[str] = []

    @tasks.task("odd", retries=0)
    async def odd(ctx: JobContext) -> str:
        await ctx.set_progress(0.5)
        try:
            await ctx.set_progress(progress)
        except InvalidValue as exc:
            refused.append(str(exc))
        await ctx.set_progress(progress)  # not caught: the job fails, clearly

    async with open_processor(tasks, workers=1) as processor:
        job = await processor.wait((await processor.submit("odd")).id)
        client = create_app(processor).test_client()
        answer = await client.get(f"/jobs/{job.id}")
        listed = await client.get("/jobs")
        processor.shutdown(grace=0)
    assert refused
    assert refused[0].startswith("progress is not JSON-serialisable: ")
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.type == "InvalidValue"
    assert job.progress == 0.5  # nothing recorded of the refused value
    assert answer.status_code == 200
    assert (await answer.get_json())["progress"] == 0.5
    assert listed.status_code == 200


# -- retention -------------------------------------------------------------------------------


async def test_finished_jobs_are_kept_for_the_result_ttl(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("quick")
    async def quick(ctx: JobContext) -> str:
        return "r"

    async with open_processor(tasks, workers=1, result_ttl="1m") as processor:
        job = await processor.submit("quick")
        await processor.wait(job.id)
        waiting = await processor.submit("quick", delay="2m")
        await trio.sleep(59.9)
        assert (await processor.get(job.id)).result == "r"
        assert [j.id for j in await processor.list_jobs(status="completed")] == [job.id]
        await trio.sleep(0.1)
        with pytest.raises(JobNotFound):
            await processor.get(job.id)
        with pytest.raises(JobNotFound):
            await processor.wait(job.id)
        assert await processor.list_jobs(status="completed") == []
        # An unfinished job is never expired, however old.
        assert (await processor.get(waiting.id)).status is JobStatus.SCHEDULED
        # An expired id can be used again.
        reused = await processor.submit("quick", {"n": 2}, job_id=job.id)
        assert reused.payload == {"n": 2}
        assert (await processor.wait(job.id)).status is JobStatus.COMPLETED
        await processor.wait(waiting.id)


async def test_at_most_result_max_jobs_finished_jobs_are_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("quick")
    async def quick(ctx: JobContext) -> int:
        await trio.sleep(1)
        return int(ctx.payload["n"])

    async with open_processor(tasks, workers=1, result_max_jobs=3) as processor:
        ids = [(await processor.submit("quick", {"n": n})).id for n in range(50)]
        later = await processor.submit("quick", {"n": 99}, delay="1h")
        for job_id in ids:
            await processor.wait(job_id)
        for job_id in ids[:-3]:
            with pytest.raises(JobNotFound):
                await processor.get(job_id)
        kept = [(await processor.get(job_id)).result for job_id in ids[-3:]]
        listed = await processor.list_jobs(limit=1000)
        await processor.cancel(later.id)
        after_cancel = await processor.list_jobs(limit=1000)
    assert kept == [47, 48, 49]
    assert [job.id for job in listed] == [later.id, *reversed(ids[-3:])]
    assert [job.id for job in after_cancel] == [later.id, *reversed(ids[-2:])]


# -- statistics ------------------------------------------------------------------------------


async def test_queue_wait_and_run_time_percentiles(autojump_clock: trio.testing.MockClock) -> None:
    tasks = TaskRegistry()

    @tasks.task("work")
    async def work(ctx: JobContext) -> None:
        await trio.sleep(ctx.payload["seconds"])

    async with open_processor(tasks, workers=1) as processor:
        t0 = trio.current_time()
        ids = [(await processor.submit("work", {"seconds": s})).id for s in (10, 20, 30, 40)]
        delayed = await processor.submit("work", {"seconds": 5}, delay=200)
        for job_id in [*ids, delayed.id]:
            await processor.wait(job_id)
        stats = await processor.stats()
        assert stats.uptime == at(trio.current_time() - t0)
    assert trio.current_time() == at(t0 + 205)
    # run times 10, 20, 30, 40, 5; queue waits 0, 10, 30, 60 and 0 for the delayed job.
    assert stats.run_time.count == 5
    assert (stats.run_time.p50, stats.run_time.max) == (at(20), at(40))
    assert stats.queue_wait.count == 5
    assert (stats.queue_wait.p50, stats.queue_wait.p90, stats.queue_wait.max) == (
        at(10),
        at(60),
        at(60),
    )
    assert stats.uptime == at(205)


async def test_workers_report_their_state_and_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("work", retries=1)
    async def work(ctx: JobContext) -> None:
        await trio.sleep(1)
        if ctx.payload.get("fail"):
            raise ValueError("no")

    async with open_processor(tasks, workers=3, retry_delay=0) as processor:
        jobs = [await processor.submit("work", {"fail": n % 3 == 0}) for n in range(9)]
        await trio.sleep(0.5)
        busy = processor.workers()
        for job in jobs:
            await processor.wait(job.id)
        idle = processor.workers()
    final = processor.workers()
    assert [w.state for w in busy] == ["busy"] * 3
    assert {w.current_job for w in busy} == {job.id for job in jobs[:3]}
    assert [w.state for w in idle] == ["idle"] * 3
    assert [w.state for w in final] == ["stopped"] * 3
    assert [w.id for w in final] == ["worker-1", "worker-2", "worker-3"]
    # 9 jobs, 3 of them failing twice: 12 attempts, 6 succeeded, 6 failed, shared out evenly.
    assert sum(w.processed for w in final) == 12
    assert sum(w.succeeded for w in final) == 6
    assert sum(w.failed for w in final) == 6
    assert all(w.processed == w.succeeded + w.failed == 4 for w in final)


async def test_listeners_see_every_event_in_order(autojump_clock: trio.testing.MockClock) -> None:
    tasks = TaskRegistry()

    @tasks.task("flaky", retries=1)
    async def flaky(ctx: JobContext) -> str:
        if ctx.attempt == 1:
            raise ValueError("once")
        return "ok"

    seen: list[tuple[str, JobStatus, int]] = []
    async with open_processor(tasks, workers=1, retry_delay=0) as processor:
        processor.add_listener(lambda event, job: seen.append((event, job.status, job.attempts)))
        job = await processor.submit("flaky")
        await processor.wait(job.id)
    assert seen == [
        ("submitted", JobStatus.PENDING, 0),
        ("started", JobStatus.RUNNING, 1),
        ("retried", JobStatus.SCHEDULED, 1),
        ("started", JobStatus.RUNNING, 2),
        ("completed", JobStatus.COMPLETED, 2),
    ]


async def test_progress_is_visible_while_the_job_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("steps")
    async def steps(ctx: JobContext) -> None:
        for i in range(1, 5):
            await ctx.set_progress({"done": i, "of": 4})
            await trio.sleep(10)

    async with open_processor(tasks, workers=1) as processor:
        job = await processor.submit("steps")
        await trio.sleep(25)
        assert (await processor.get(job.id)).progress == {"done": 3, "of": 4}
        done = await processor.wait(job.id)
    assert done.progress == {"done": 4, "of": 4}


# -- graceful exit ---------------------------------------------------------------------------


async def test_leaving_the_block_drains_gracefully(autojump_clock: trio.testing.MockClock) -> None:
    tasks = TaskRegistry()
    ran: list[str] = []
    refused: list[str] = []
    holder: dict[str, Any] = {}

    @tasks.task("work")
    async def work(ctx: JobContext) -> str:
        name = str(ctx.payload["name"])
        ran.append(name)
        await trio.sleep(ctx.payload["seconds"])
        try:
            await holder["p"].submit("work", {"name": "during-grace", "seconds": 1})
        except ShuttingDown as exc:
            refused.append(str(exc))
        return name

    logger, capture = capturing_logger()
    timeline = Timeline()
    async with open_processor(tasks, workers=2, shutdown_timeout="10s", logger=logger) as p:
        holder["p"] = p
        p.add_listener(timeline)
        t0 = trio.current_time()
        short = await p.submit("work", {"name": "short", "seconds": 5})
        long = await p.submit("work", {"name": "long", "seconds": 100})
        await trio.testing.wait_all_tasks_blocked()  # both workers busy
        queued = await p.submit("work", {"name": "queued", "seconds": 1}, priority="urgent")
        delayed = await p.submit("work", {"name": "delayed", "seconds": 1}, delay=3)
        await trio.testing.wait_all_tasks_blocked()
        assert not p.closing
    assert trio.current_time() == at(t0 + 10)
    assert p.closing
    # The short job finished within the grace period; nothing new started, even on its
    # free worker; the long one was cancelled when the grace period ended.
    assert ran == ["short", "long"]
    assert refused == ["shutting down: no new jobs are accepted"]
    assert timeline.times(short.id, "completed") == [at(t0 + 5)]
    assert sorted(p.abandoned) == sorted([long.id, queued.id, delayed.id])
    for job in (long, queued, delayed):
        assert not (await p.get(job.id)).status.is_final
    assert (await p.get(short.id)).status is JobStatus.COMPLETED
    with pytest.raises(ShuttingDown):
        await p.submit("work", {"name": "after", "seconds": 1})
    assert [w.state for w in p.workers()] == ["stopped", "stopped"]
    warnings = [c for c in capture.calls if c.method_name == "warning" and c.kwargs.get("count")]
    assert len(warnings) == 1
    assert warnings[0].kwargs["count"] == 3
    assert sorted(warnings[0].kwargs["first_ids"]) == sorted(p.abandoned)


async def test_leaving_an_idle_processor_takes_no_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("quick")
    async def quick(ctx: JobContext) -> None:
        return None

    async with open_processor(tasks, workers=4, shutdown_timeout="30s") as processor:
        t0 = trio.current_time()
        await processor.wait((await processor.submit("quick")).id)
    assert trio.current_time() == t0
    assert processor.abandoned == []
    assert [w.state for w in processor.workers()] == ["stopped"] * 4


async def test_leaving_with_an_error_cancels_running_jobs_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()
    unwound: list[float] = []

    @tasks.task("long")
    async def long(ctx: JobContext) -> None:
        try:
            await trio.sleep(100)
        finally:
            unwound.append(trio.current_time())

    holder: dict[str, Any] = {}
    with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="caller failed")):
        async with open_processor(tasks, workers=1, shutdown_timeout="30s") as processor:
            holder["p"] = processor
            t0 = trio.current_time()
            job = await processor.submit("long")
            await trio.sleep(1)
            raise RuntimeError("caller failed")
    assert unwound == [at(t0 + 1)]
    assert trio.current_time() == at(t0 + 1)
    assert holder["p"].abandoned == [job.id]


async def test_shutdown_with_a_shorter_grace_tightens_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("long")
    async def long(ctx: JobContext) -> None:
        await trio.sleep(100)

    async with trio.open_nursery() as nursery:
        processor = Processor(tasks, Config(workers=1, shutdown_timeout=60))
        await nursery.start(processor.run)
        t0 = trio.current_time()
        job = await processor.submit("long")
        await trio.testing.wait_all_tasks_blocked()
        processor.shutdown()
        await trio.sleep(5)
        processor.shutdown(grace=2)
        await processor.wait_stopped()
    assert trio.current_time() == at(t0 + 7)
    assert processor.abandoned == [job.id]


async def test_a_processor_without_workers_only_produces(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()
    ran: list[str] = []

    @tasks.task("quick")
    async def quick(ctx: JobContext) -> None:
        ran.append(ctx.job.id)

    async with open_processor(tasks, workers=0) as processor:
        job = await processor.submit("quick")
        await trio.sleep(3600)
        assert (await processor.get(job.id)).status is JobStatus.PENDING
        assert processor.workers() == ()
        assert (await processor.stats()).queue_size == 1
    assert ran == []
    assert processor.abandoned == [job.id]


# -- admission -------------------------------------------------------------------------------


async def test_queue_full_is_raised_without_waiting(autojump_clock: trio.testing.MockClock) -> None:
    tasks = TaskRegistry()

    @tasks.task("long")
    async def long(ctx: JobContext) -> None:
        await trio.sleep(100)

    async with open_processor(tasks, workers=2, max_concurrency=5) as processor:
        t0 = trio.current_time()
        for _ in range(5):
            await processor.submit("long")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(QueueFull):
            await processor.submit("long")
        assert trio.current_time() == t0
        stats = await processor.stats()
        assert (stats.running, stats.queue_size) == (2, 3)
        assert stats.queued[Priority.NORMAL] == 3
        processor.shutdown(grace=0)


def test_latency_percentiles_are_nearest_rank() -> None:
    p = Percentiles.of(range(1, 101))
    assert (p.count, p.p50, p.p90, p.p99, p.max) == (100, 50, 90, 99, 100)
    assert Percentiles.of([]).p50 is None
    assert Percentiles.of([3.0]).p99 == 3.0
    assert math.isclose(Percentiles.of([0.5, 1.5]).p50 or 0, 0.5)


async def test_waiting_for_a_job_abandoned_at_shutdown_ends_with_shutting_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("long")
    async def long(ctx: JobContext) -> None:
        await trio.sleep(1000)

    outcome: list[BaseException] = []

    async def waiter(processor: Processor, job_id: str) -> None:
        try:
            await processor.wait(job_id)
        except ShuttingDown as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        async with open_processor(tasks, workers=1, shutdown_timeout=1) as processor:
            running = await processor.submit("long")
            queued = await processor.submit("long")
            nursery.start_soon(waiter, processor, queued.id)
            await trio.testing.wait_all_tasks_blocked()
        # The running job was interrupted when the grace period ended and handed back.
        assert processor.abandoned == [running.id, queued.id]
    assert len(outcome) == 1
    assert "abandoned pending" in str(outcome[0])
    # Asking again after the stop answers at once, the same way.
    with pytest.raises(ShuttingDown):
        await processor.wait(queued.id)
