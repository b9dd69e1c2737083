"""One node through every path of the Redis broker, for the deployment tests (ACL users, TLS,
Cluster): submitting (with leasing for idle workers, near the admission bound, with priority
aging on), fetching, recording outcomes, a retry, a delayed job promoted, waiting (the done
channel), cancelling a running job (the cancel channel), a type with a concurrency and a rate
limit, a failed job queued again (``processor.retry``), lookups, lists and the cluster view.
"""

from __future__ import annotations

import time

import attrs
import trio

import trio_tasks
from trio_tasks import JobStatus, PermanentError, Retry
from trio_tasks.brokers._redis import RedisBroker


@attrs.define
class Tasks:
    """The job types of :func:`exercise`: ``noop`` (sets its progress to 1, returns its id,
    notes when it ran in ``ran``), ``flaky`` (retried once), ``block`` (sets ``started``,
    then waits to be cancelled), ``capped`` (one at a time, 100 a second) and ``broken`` (fails
    for good until ``fixed`` is set)."""

    registry: trio_tasks.TaskRegistry
    started: trio.Event
    ran: list[float]
    fixed: list[bool] = attrs.field(factory=list)


def exercise_tasks() -> Tasks:
    """A fresh :class:`Tasks`."""
    tasks = Tasks(trio_tasks.TaskRegistry(), trio.Event(), [])
    registry = tasks.registry

    @registry.task("noop")
    async def noop(ctx: trio_tasks.JobContext) -> str:
        tasks.ran.append(time.monotonic())
        await ctx.set_progress(1)
        return ctx.job.id

    @registry.task("flaky")
    async def flaky(ctx: trio_tasks.JobContext) -> int:
        if ctx.job.attempts == 1:
            raise Retry(delay=0.05)
        return ctx.job.attempts

    @registry.task("block")
    async def block(ctx: trio_tasks.JobContext) -> None:
        tasks.started.set()
        await trio.sleep_forever()

    @registry.task("capped", concurrency=1, rate="100/s")
    async def capped(ctx: trio_tasks.JobContext) -> None:
        await trio.sleep(0.01)

    @registry.task("broken")
    async def broken(ctx: trio_tasks.JobContext) -> str:
        if not tasks.fixed:
            raise PermanentError("not yet")
        return "fixed"

    return tasks


async def exercise(url: str, *, jobs: int = 20) -> RedisBroker:
    """Run one node with 4 workers on ``url`` through every path; return its broker (stopped).

    Fails (an assertion or an exception) if any path does not work.
    """
    tasks = exercise_tasks()
    registry, started = tasks.registry, tasks.started
    # A bound just above the first batch: the later submissions take the exact count of
    # unfinished jobs (the index, which holds finished jobs too, is past the bound).
    broker = RedisBroker(url, max_concurrency=jobs + 5, retry_cap=0.2)
    with trio.fail_after(30):
        async with trio_tasks.open_processor(
            registry,
            broker=broker,
            workers=4,
            retry_delay=0,
            shutdown_timeout=2,
            priority_aging=60,
        ) as processor:
            admissions = await processor.submit_many([trio_tasks.JobRequest(type="noop")] * jobs)
            ids = [a.job.id for a in admissions]
            for job_id in ids:
                done = await processor.wait(job_id)
                assert done.status is JobStatus.COMPLETED, done
                assert done.result == job_id
            retried = await processor.submit("flaky")
            assert (await processor.wait(retried.id)).result == 2
            delayed = await processor.submit("noop", delay=0.1)
            assert (await processor.wait(delayed.id)).status is JobStatus.COMPLETED
            running = await processor.submit("block")
            await started.wait()
            await processor.cancel(running.id)
            assert (await processor.wait(running.id)).status is JobStatus.CANCELLED
            capped = await processor.submit_many([trio_tasks.JobRequest(type="capped")] * 3)
            for admission in capped:
                done = await processor.wait(admission.job.id)
                assert done.status is JobStatus.COMPLETED, done
            broken = await processor.submit("broken")
            assert (await processor.wait(broken.id)).status is JobStatus.FAILED
            tasks.fixed.append(True)
            await processor.retry(broken.id)
            assert (await processor.wait(broken.id)).result == "fixed"
            found = await processor.get(ids[0])
            assert found.progress == 1
            listed = await processor.list_jobs(status=JobStatus.COMPLETED, limit=1000)
            assert set(ids) <= {job.id for job in listed}
            stats = await processor.stats()
            assert stats.cluster is not None
            assert stats.cluster.totals["completed"] == jobs + 2 + 3 + 1
            assert stats.cluster.totals["cancelled"] == 1
            assert broker.health() is None
    return broker
