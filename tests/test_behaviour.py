"""The broker-independent rules of the job engine (SPEC §4), run against every broker.

Each test takes ``make_processor`` (a processor on the broker under test) and
``behaviour_clock`` (an autojump ``MockClock`` on the memory broker, the real clock otherwise).
Contention is made with one worker held by a handler that waits on an event the test controls;
nothing here waits for time to pass, so the same tests hold on a networked broker.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio

from trio_tasks import (
    Job,
    JobAlreadyFinished,
    JobContext,
    JobNotFound,
    JobRequest,
    JobStatus,
    PermanentError,
    Priority,
    Processor,
    QueueFull,
    Retry,
    TaskRegistry,
    UnknownJobType,
)

#: ``make_processor``: ``async with make_processor(registry, **settings) as processor``.
MakeProcessor = Callable[..., AbstractAsyncContextManager[Processor]]

#: Upper bound on every wait: generous for a real broker, instant under the autojump clock.
LIMIT = 10


class Lab:
    """A registry whose handlers the test steers.

    ``block`` holds its worker until :attr:`release` is set (:attr:`blocking` is set once it
    runs); ``record`` appends ``payload["name"]`` to :attr:`order` and returns it.
    """

    def __init__(self) -> None:
        self.tasks = TaskRegistry()
        self.order: list[str] = []
        self.blocking = trio.Event()
        self.release = trio.Event()
        self.tasks.register("block", self._block)
        self.tasks.register("record", self._record)

    async def _block(self, ctx: JobContext) -> str:
        self.blocking.set()
        await self.release.wait()
        return "released"

    async def _record(self, ctx: JobContext) -> str:
        name = str(ctx.payload["name"])
        self.order.append(name)
        return name


async def _occupy(processor: Processor, lab: Lab) -> Job:
    """Submit a ``block`` job and return once it holds the (single) worker."""
    job = await processor.submit("block")
    await lab.blocking.wait()
    return job


# -- priority --------------------------------------------------------------------------------


async def test_free_worker_takes_the_highest_priority_first(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    lab = Lab()
    submissions: list[tuple[str, Priority | str | int]] = [
        ("low-1", "low"),
        ("normal-1", "normal"),
        ("urgent-1", "urgent"),
        ("high-1", "high"),
        ("low-2", Priority.LOW),
        ("urgent-2", 4),
        ("normal-2", "2"),
        ("high-2", "HIGH"),
    ]
    with trio.fail_after(LIMIT):
        async with make_processor(lab.tasks, workers=1) as processor:
            await _occupy(processor, lab)
            ids = [
                (await processor.submit("record", {"name": name}, priority=prio)).id
                for name, prio in submissions
            ]
            lab.release.set()
            done = [await processor.wait(job_id) for job_id in ids]
    assert lab.order == [
        "urgent-1",
        "urgent-2",
        "high-1",
        "high-2",
        "normal-1",
        "normal-2",
        "low-1",
        "low-2",
    ]
    assert all(job.status is JobStatus.COMPLETED for job in done)
    assert [job.priority for job in done] == [Priority.parse(p) for _, p in submissions]


async def test_a_later_urgent_job_overtakes_older_waiting_jobs(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    tasks = TaskRegistry()
    order: list[str] = []
    first_running = trio.Event()
    go_on = trio.Event()

    @tasks.task("step")
    async def step(ctx: JobContext) -> None:
        order.append(ctx.payload["name"])
        if ctx.payload["name"] == "low-1":
            first_running.set()
            await go_on.wait()

    with trio.fail_after(LIMIT):
        async with make_processor(tasks, workers=1) as processor:
            ids = [(await processor.submit("step", {"name": "low-1"}, priority="low")).id]
            await first_running.wait()
            for name in ("low-2", "low-3"):
                ids.append((await processor.submit("step", {"name": name}, priority="low")).id)
            # low-2 and low-3 have waited longest, but a free worker takes the urgent job first.
            ids.append((await processor.submit("step", {"name": "urgent"}, priority="urgent")).id)
            go_on.set()
            for job_id in ids:
                await processor.wait(job_id)
    assert order == ["low-1", "urgent", "low-2", "low-3"]


async def test_jobs_of_one_priority_run_first_in_first_out(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    lab = Lab()
    names = [f"job-{i:02d}" for i in range(20)]
    with trio.fail_after(LIMIT):
        async with make_processor(lab.tasks, workers=1) as processor:
            await _occupy(processor, lab)
            ids = [
                (await processor.submit("record", {"name": name}, priority="high")).id
                for name in names
            ]
            lab.release.set()
            for job_id in ids:
                await processor.wait(job_id)
    assert lab.order == names


# -- cancellation ----------------------------------------------------------------------------


async def test_cancelling_a_pending_job_removes_it(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    lab = Lab()
    with trio.fail_after(LIMIT):
        async with make_processor(lab.tasks, workers=1) as processor:
            await _occupy(processor, lab)
            doomed = await processor.submit("record", {"name": "doomed"})
            kept = await processor.submit("record", {"name": "kept"})
            assert doomed.status is JobStatus.PENDING

            cancelled = await processor.cancel(doomed.id)

            assert cancelled.status is JobStatus.CANCELLED
            assert (await processor.get(doomed.id)).status is JobStatus.CANCELLED
            stats = await processor.stats()
            assert stats.queued[Priority.NORMAL] == 1
            assert stats.cancelled == 1
            with pytest.raises(JobAlreadyFinished, match="is already cancelled"):
                await processor.cancel(doomed.id)
            lab.release.set()
            assert (await processor.wait(kept.id)).status is JobStatus.COMPLETED
            final = await processor.wait(doomed.id)
    assert lab.order == ["kept"]
    assert final.status is JobStatus.CANCELLED
    assert final.attempts == 0
    assert final.completed_at is not None
    assert processor.abandoned == []


async def test_cancelled_pending_jobs_free_their_admission_slot(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    lab = Lab()
    with trio.fail_after(LIMIT):
        async with make_processor(lab.tasks, workers=1, max_concurrency=2) as processor:
            await _occupy(processor, lab)
            ids = []
            # Fill the last slot and free it again, several times over: every cancelled job
            # gives its slot back and never runs.
            for i in range(5):
                job = await processor.submit("record", {"name": f"cancelled-{i}"})
                with pytest.raises(QueueFull):
                    await processor.submit("record", {"name": "refused"})
                await processor.cancel(job.id)
                ids.append(job.id)
            last = await processor.submit("record", {"name": "last"})
            lab.release.set()
            assert (await processor.wait(last.id)).status is JobStatus.COMPLETED
            for job_id in ids:
                assert (await processor.get(job_id)).status is JobStatus.CANCELLED
    assert lab.order == ["last"]


async def test_cancelling_a_delayed_job_removes_it(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    lab = Lab()
    with trio.fail_after(LIMIT):
        async with make_processor(lab.tasks, workers=1) as processor:
            later = await processor.submit("record", {"name": "later"}, delay="1h")
            assert later.status is JobStatus.SCHEDULED
            assert (await processor.stats()).scheduled == 1

            cancelled = await processor.cancel(later.id)

            assert cancelled.status is JobStatus.CANCELLED
            stats = await processor.stats()
            assert (stats.scheduled, stats.cancelled) == (0, 1)
            final = await processor.wait(later.id)
            with pytest.raises(JobNotFound, match="'no-such-job' not found"):
                await processor.cancel("no-such-job")
    assert final.status is JobStatus.CANCELLED
    assert final.attempts == 0
    assert lab.order == []
    assert processor.abandoned == []


async def test_cancelling_a_job_waiting_to_retry_removes_it(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    tasks = TaskRegistry()
    attempts: list[int] = []

    @tasks.task("again", retries=5)
    async def again(ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        raise Retry(delay=3600)

    retried = trio.Event()
    with trio.fail_after(LIMIT):
        async with make_processor(tasks, workers=1) as processor:
            processor.add_listener(lambda event, job: retried.set() if event == "retried" else None)
            job = await processor.submit("again")
            await retried.wait()
            waiting = await processor.get(job.id)
            assert waiting.status is JobStatus.SCHEDULED
            assert waiting.attempts == 1

            cancelled = await processor.cancel(job.id)

            assert cancelled.status is JobStatus.CANCELLED
            final = await processor.wait(job.id)
            stats = await processor.stats()
    assert attempts == [1]
    assert final.status is JobStatus.CANCELLED
    assert final.attempts == 1
    assert (stats.retried, stats.cancelled, stats.failed, stats.scheduled) == (1, 1, 0, 0)


async def test_cancelling_a_running_job_cancels_its_scope_and_never_retries_it(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    tasks = TaskRegistry()
    running = trio.Event()
    unwound: list[str] = []

    @tasks.task("hold", retries=3)
    async def hold(ctx: JobContext) -> None:
        running.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            unwound.append(ctx.job.id)
            raise

    @tasks.task("quick")
    async def quick(ctx: JobContext) -> str:
        return "done"

    with trio.fail_after(LIMIT):
        async with make_processor(tasks, workers=1, retry_delay=0) as processor:
            job = await processor.submit("hold")
            await running.wait()
            assert (await processor.stats()).running == 1

            answer = await processor.cancel(job.id)

            assert answer.status is JobStatus.RUNNING  # it ends once its handler has unwound
            final = await processor.wait(job.id)
            with pytest.raises(JobAlreadyFinished, match="is already cancelled"):
                await processor.cancel(job.id)
            # The worker is free again.
            after = await processor.submit("quick")
            assert (await processor.wait(after.id)).result == "done"
            stats = await processor.stats()
    assert unwound == [job.id]
    assert final.status is JobStatus.CANCELLED
    assert final.attempts == 1
    assert final.completed_at is not None
    assert (stats.cancelled, stats.retried, stats.failed, stats.completed) == (1, 0, 0, 1)
    assert stats.running == 0
    (worker,) = stats.workers
    assert (worker.processed, worker.succeeded) == (2, 1)


async def test_unknown_ids_are_not_found(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    lab = Lab()
    with trio.fail_after(LIMIT):
        async with make_processor(lab.tasks, workers=1) as processor:
            with pytest.raises(JobNotFound, match="job 'nope' not found"):
                await processor.get("nope")
            with pytest.raises(JobNotFound):
                await processor.wait("nope")
            with pytest.raises(JobNotFound):
                await processor.cancel("nope")


# -- admission -------------------------------------------------------------------------------


async def test_submissions_past_the_bound_are_refused_at_once(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    lab = Lab()
    with trio.fail_after(LIMIT):
        async with make_processor(lab.tasks, workers=1, max_concurrency=3) as processor:
            await _occupy(processor, lab)  # running: 1 of 3
            queued = await processor.submit("record", {"name": "queued"})  # pending: 2 of 3
            delayed = await processor.submit("record", {"name": "delayed"}, delay="1h")  # 3 of 3

            with pytest.raises(QueueFull, match="queue full") as info:
                await processor.submit("record", {"name": "refused"})
            assert info.value.limit == 3
            # An existing id is not a new job: it is answered even at the bound.
            again = await processor.submit("record", {"name": "x"}, job_id=queued.id)
            assert again.id == queued.id
            assert again.payload == {"name": "queued"}

            await processor.cancel(delayed.id)  # one slot free
            two = [JobRequest.build("record", {"name": f"batch-{i}"}) for i in range(2)]
            with pytest.raises(QueueFull):
                await processor.submit_many(two)  # all or none
            stats = await processor.stats()
            assert stats.submitted == 3
            assert stats.queue_size == 1
            listed = await processor.list_jobs(type="record")
            assert {job.payload["name"] for job in listed} == {"queued", "delayed"}

            single = await processor.submit("record", {"name": "fits"})
            lab.release.set()
            await processor.wait(queued.id)
            await processor.wait(single.id)
            # Finished jobs no longer count against the bound.
            more = [await processor.submit("record", {"name": f"more-{i}"}) for i in range(3)]
            for job in more:
                await processor.wait(job.id)
    assert lab.order == ["queued", "fits", "more-0", "more-1", "more-2"]


# -- idempotency -----------------------------------------------------------------------------


async def test_resubmitting_an_id_returns_the_existing_job(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    lab = Lab()
    with trio.fail_after(LIMIT):
        async with make_processor(lab.tasks, workers=1) as processor:
            await _occupy(processor, lab)
            first = await processor.submit("record", {"name": "first"}, job_id="order-42")
            second = await processor.submit(
                "record", {"name": "second"}, priority="urgent", job_id="order-42"
            )
            assert first.id == second.id == "order-42"
            assert second.payload == {"name": "first"}
            assert second.priority is Priority.NORMAL

            admissions = await processor.submit_many(
                [
                    JobRequest.build("record", {"name": "third"}, job_id="order-42"),
                    JobRequest.build("record", {"name": "fresh"}, job_id="order-43"),
                    JobRequest.build("record", {"name": "dup"}, job_id="order-43"),
                ]
            )
            assert [(a.job.id, a.created) for a in admissions] == [
                ("order-42", False),
                ("order-43", True),
                ("order-43", False),
            ]
            assert admissions[2].job.payload == {"name": "fresh"}

            lab.release.set()
            done = await processor.wait("order-42")
            await processor.wait("order-43")
            # A finished job is still the answer for its id.
            after = await processor.submit("record", {"name": "after"}, job_id="order-42")
            stats = await processor.stats()
    assert done.status is JobStatus.COMPLETED
    assert done.result == "first"
    assert after.status is JobStatus.COMPLETED
    assert after.result == "first"
    assert lab.order == ["first", "fresh"]
    assert stats.submitted == 3  # block, order-42, order-43


# -- failures and retries --------------------------------------------------------------------


async def test_a_failing_handler_is_retried_until_it_succeeds(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    tasks = TaskRegistry()
    seen: list[int] = []

    @tasks.task("flaky")
    async def flaky(ctx: JobContext) -> str:
        seen.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ValueError(f"boom {ctx.attempt}")
        return f"ok on {ctx.attempt}"

    with trio.fail_after(LIMIT):
        async with make_processor(tasks, workers=1, retry_delay=0, retry_attempts=3) as processor:
            job = await processor.submit("flaky")
            done = await processor.wait(job.id)
            stats = await processor.stats()
    assert seen == [1, 2, 3]
    assert done.status is JobStatus.COMPLETED
    assert (done.attempts, done.max_attempts) == (3, 4)
    assert done.result == "ok on 3"
    assert (stats.completed, stats.retried, stats.failed) == (1, 2, 0)


async def test_a_job_out_of_attempts_fails_with_the_last_error(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    tasks = TaskRegistry()

    @tasks.task("broken", retries=2)
    async def broken(ctx: JobContext) -> None:
        raise ValueError(f"boom {ctx.attempt}")

    @tasks.task("silent")
    async def silent(ctx: JobContext) -> None:
        raise RuntimeError()

    with trio.fail_after(LIMIT):
        async with make_processor(tasks, workers=1, retry_delay=0, retry_attempts=7) as processor:
            by_type = await processor.wait((await processor.submit("broken")).id)
            by_job = await processor.wait((await processor.submit("broken", retries=0)).id)
            by_default = await processor.wait((await processor.submit("silent")).id)
            stats = await processor.stats()
    assert by_type.status is JobStatus.FAILED
    assert (by_type.attempts, by_type.max_attempts) == (3, 3)
    assert by_type.error is not None
    assert (by_type.error.message, by_type.error.type) == ("boom 3", "ValueError")
    assert by_type.completed_at is not None
    assert (by_job.attempts, by_job.max_attempts) == (1, 1)
    assert by_job.error is not None
    assert by_job.error.message == "boom 1"
    assert (by_default.attempts, by_default.max_attempts) == (8, 8)
    assert by_default.error is not None
    assert (by_default.error.message, by_default.error.type) == ("RuntimeError", "RuntimeError")
    assert (stats.failed, stats.retried, stats.completed) == (3, 2 + 0 + 7, 0)


async def test_permanent_error_fails_at_once(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    tasks = TaskRegistry()
    calls: list[int] = []

    @tasks.task("picky", retries=5)
    async def picky(ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        raise PermanentError("bad input: no address")

    with trio.fail_after(LIMIT):
        async with make_processor(tasks, workers=1, retry_delay=0) as processor:
            done = await processor.wait((await processor.submit("picky")).id)
            stats = await processor.stats()
    assert calls == [1]
    assert done.status is JobStatus.FAILED
    assert (done.attempts, done.max_attempts) == (1, 6)
    assert done.error is not None
    assert (done.error.message, done.error.type) == ("bad input: no address", "PermanentError")
    assert (stats.failed, stats.retried) == (1, 0)


async def test_retry_requests_count_as_attempts(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    tasks = TaskRegistry()
    calls: list[int] = []

    @tasks.task("poll", retries=2)
    async def poll(ctx: JobContext) -> str:
        calls.append(ctx.attempt)
        raise Retry(delay=0)

    @tasks.task("patient", retries=4)
    async def patient(ctx: JobContext) -> str:
        if ctx.attempt < 3:
            raise Retry(delay=0, message=f"not ready at {ctx.attempt}")
        return "ready"

    with trio.fail_after(LIMIT):
        async with make_processor(tasks, workers=1, retry_delay=0) as processor:
            exhausted = await processor.wait((await processor.submit("poll")).id)
            ready = await processor.wait((await processor.submit("patient")).id)
            stats = await processor.stats()
    assert calls == [1, 2, 3]
    assert exhausted.status is JobStatus.FAILED
    assert exhausted.attempts == 3
    assert exhausted.error is not None
    assert (exhausted.error.message, exhausted.error.type) == ("retry requested", "Retry")
    assert ready.status is JobStatus.COMPLETED
    assert (ready.attempts, ready.result) == (3, "ready")
    assert (stats.retried, stats.failed, stats.completed) == (2 + 2, 1, 1)


# -- unknown types ---------------------------------------------------------------------------


async def test_unknown_types_are_refused_up_front(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    lab = Lab()
    with trio.fail_after(LIMIT):
        async with make_processor(lab.tasks, workers=1) as processor:
            with pytest.raises(UnknownJobType) as info:
                await processor.submit("sms", {"to": "+33"})
            assert str(info.value) == "unknown job type 'sms'; known types: block, record"
            assert info.value.known == ["block", "record"]
            with pytest.raises(UnknownJobType, match="'sms'"):
                await processor.submit_many(
                    [JobRequest.build("record", {"name": "ok"}), JobRequest.build("sms")]
                )
            stats = await processor.stats()
            jobs = await processor.list_jobs()
    assert stats.submitted == 0
    assert jobs == []
    assert lab.order == []


# -- statistics ------------------------------------------------------------------------------


async def test_stats_count_what_happened(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    lab = Lab()

    @lab.tasks.task("fail", retries=1)
    async def fail(ctx: JobContext) -> None:
        raise ValueError("no")

    @lab.tasks.task("flaky", retries=3)
    async def flaky(ctx: JobContext) -> int:
        if ctx.attempt == 1:
            raise ValueError("once")
        return ctx.attempt

    @lab.tasks.task("fatal")
    async def fatal(ctx: JobContext) -> None:
        raise PermanentError("never")

    with trio.fail_after(LIMIT):
        async with make_processor(lab.tasks, workers=1, retry_delay=0) as processor:
            blocker = await _occupy(processor, lab)
            layout = {"low": 2, "normal": 1, "high": 3, "urgent": 1}
            ids = [
                (await processor.submit("record", {"name": f"{prio}-{i}"}, priority=prio)).id
                for prio, count in layout.items()
                for i in range(count)
            ]
            ids += [
                (await processor.submit(kind)).id for kind in ("fail", "flaky", "fatal", "record")
            ]
            delayed = await processor.submit("record", {"name": "delayed"}, delay="1h")
            cancelled = ids.pop()  # the last "record" (normal)
            await processor.cancel(cancelled)

            during = await processor.stats()
            lab.release.set()
            for job_id in [blocker.id, *ids]:
                await processor.wait(job_id)
            await processor.cancel(delayed.id)
            after = await processor.stats()

    assert during.submitted == 1 + 7 + 4 + 1
    assert during.running == 1
    assert during.workers_busy == 1
    assert during.workers[0].current_job == blocker.id
    assert during.queued == {
        Priority.LOW: 2,
        Priority.NORMAL: 1 + 3,  # one normal record plus fail, flaky, fatal
        Priority.HIGH: 3,
        Priority.URGENT: 1,
    }
    assert during.queue_size == 10
    assert during.scheduled == 1
    assert during.cancelled == 1
    assert (during.completed, during.failed, during.retried) == (0, 0, 0)

    # block + 7 records + flaky complete; fail (2 attempts) and fatal fail; two cancelled.
    assert after.submitted == 13
    assert after.completed == 1 + 7 + 1
    assert after.failed == 2
    assert after.retried == 1 + 1  # fail once, flaky once
    assert after.cancelled == 2
    assert after.running == 0
    assert after.queue_size == 0
    assert after.scheduled == 0
    assert set(after.queued) == set(Priority)
    (worker,) = after.workers
    attempts = 1 + 7 + 2 + 2 + 1
    assert (worker.processed, worker.succeeded, worker.failed) == (attempts, 9, 4)
    assert (worker.state, worker.current_job) == ("idle", None)
    assert after.run_time.count == attempts
    assert after.queue_wait.count == attempts
    assert after.uptime >= 0
