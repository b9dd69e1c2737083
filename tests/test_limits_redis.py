"""Per-type limits on Redis across nodes: the cap holds cluster-wide, a node that dies with a
limited job frees its slot when its lease is reaped, the rate bounds starts cluster-wide, and
the limits written by the nodes show in every node's figures."""

from __future__ import annotations

import time
from typing import Any

import coredis
import pytest
import trio
from test_redis_broker import node, running, until

from trio_tasks import JobContext, JobStatus, Priority, TaskRegistry
from trio_tasks._job import Job
from trio_tasks._limits import DispatchRules, LimitFigures, Rate, TypeLimit
from trio_tasks._request import new_job_id
from trio_tasks.brokers._redis import RedisBroker
from trio_tasks.brokers._redis_link import parse_redis_url

pytestmark = pytest.mark.redis


async def held(broker: RedisBroker, job_type: str, n: int) -> bool:
    """Whether ``n`` jobs of ``job_type`` are held back."""
    figures = (await broker.limit_figures()).get(job_type)
    return figures is not None and figures.held >= n


def new_job(job_type: str, name: str = "") -> Job:
    return Job(
        id=new_job_id(),
        type=job_type,
        priority=Priority.NORMAL,
        payload={"name": name},
        max_attempts=4,
        timeout=60.0,
        created_at=time.time(),
    )


async def test_the_concurrency_cap_holds_across_nodes(redis_url: str) -> None:
    tasks = TaskRegistry()
    state = {"running": 0, "peak": 0}
    go = trio.Event()

    @tasks.task("capped", concurrency=2)
    async def capped(ctx: JobContext) -> None:
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        try:
            await go.wait()
        finally:
            state["running"] -= 1

    @tasks.task("other")
    async def other(ctx: JobContext) -> str:
        return ctx.job.worker_id or ""

    with trio.fail_after(30):
        async with (
            node(tasks, redis_url, workers=3) as a,
            node(tasks, redis_url, workers=3) as b,
        ):
            jobs = [await a.submit("capped") for _ in range(10)]
            await until(lambda: state["running"] >= 2, timeout=30)
            # Four workers of the two nodes are free: others' jobs run past the eight held.
            others = [await b.submit("other") for _ in range(4)]
            for job in others:
                assert (await b.wait(job.id)).status is JobStatus.COMPLETED
            assert state["running"] == 2
            figures = (await a.stats()).limits
            assert figures == (await b.stats()).limits
            assert figures["capped"] == LimitFigures(2, None, 2, 8)
            go.set()
            for job in jobs:
                assert (await b.wait(job.id)).status is JobStatus.COMPLETED
            assert (await a.stats()).limits["capped"] == LimitFigures(2, None, 0, 0)
    assert state["peak"] == 2


async def test_a_dead_node_frees_its_slot_when_its_lease_is_reaped(
    redis_server_url: str, redis_url: str
) -> None:
    from redis_server import TcpProxy, address, through

    rules = DispatchRules({"capped": TypeLimit(concurrency=1)})
    proxy = TcpProxy(*address(redis_server_url))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(proxy.run)
            doomed = RedisBroker(through(redis_url, port), lease=0.6, retry_cap=0.1)
            other = RedisBroker(redis_url, lease=0.6, retry_cap=0.1)
            doomed.set_dispatch(rules)
            other.set_dispatch(rules)
            async with running(doomed), running(other):
                first, second = new_job("capped", "first"), new_job("capped", "second")
                await doomed.enqueue([first, second])
                taken = await doomed.fetch("doomed-worker")
                assert taken.job.id == first.id
                proxy.cut()  # the node is gone with the only slot of "capped"
                figures = await other.limit_figures()
                assert figures["capped"] == LimitFigures(1, None, 1, 0)
                # The other node's fetch holds "second" back, then gets "first" once the
                # lease of the dead node is reaped (its slot freed, the job back in front).
                again = await other.fetch("other-worker")
                assert again.job.id == first.id
                assert again.job.attempts == 2
                # The slot is the new lease's ("second" may have been held meanwhile).
                assert (await other.limit_figures())["capped"].running == 1
                await other.complete(again, "done")
                after = await other.fetch("other-worker")
                assert after.job.id == second.id
                await other.complete(after, "done")
                figures = await other.limit_figures()
                assert figures["capped"] == LimitFigures(1, None, 0, 0)
            nursery.cancel_scope.cancel()


async def test_the_rate_bounds_starts_in_every_window_across_nodes(redis_url: str) -> None:
    tasks = TaskRegistry()

    @tasks.task("paced", rate="3/1s")
    async def paced(ctx: JobContext) -> None:
        pass

    with trio.fail_after(30):
        async with (
            node(tasks, redis_url, workers=3) as a,
            node(tasks, redis_url, workers=3) as b,
        ):
            jobs = [await a.submit("paced") for _ in range(8)]
            done = [await b.wait(job.id) for job in jobs]
            figures = (await a.stats()).limits["paced"]
    starts = sorted(job.started_at or 0.0 for job in done)
    assert all(job.status is JobStatus.COMPLETED for job in done)
    # No window of one second holds more than three starts (each node's clock: one machine).
    assert all(
        later - earlier >= 1.0 - 1e-6 for earlier, later in zip(starts, starts[3:], strict=False)
    )
    assert figures == LimitFigures(None, "3/1s", 0, 0)


async def test_a_node_without_the_limit_removes_it_and_lets_held_jobs_go(
    redis_url: str,
) -> None:
    limited = DispatchRules({"t": TypeLimit(concurrency=1, rate=Rate.parse("5/m"))})
    with trio.fail_after(20):
        async with running(RedisBroker(redis_url, retry_cap=0.1)) as broker:
            broker.set_dispatch(limited)
            await broker._scripts.load()
            await broker.enqueue([new_job("t", "a"), new_job("t", "b")])
            first = await broker.fetch("w1")
            assert first.job.payload["name"] == "a"
            taken: list[Any] = []
            async with trio.open_nursery() as nursery:

                async def fetch_second() -> None:
                    taken.append(await broker.fetch("w2"))

                nursery.start_soon(fetch_second)
                # "b" is fetched and held: the worker keeps waiting.
                await until(lambda: held(broker, "t", 1), timeout=20)
                assert (await broker.limit_figures())["t"] == LimitFigures(1, "5/m", 1, 1)
                assert not taken
                # A node whose registry has "t" without limits starts: they are gone, and
                # "b" goes back to its queue and to the waiting worker.
                broker.set_dispatch(DispatchRules(unlimited=frozenset({"t"})))
                await broker._scripts.load()
            second = taken[0]
            assert second.job.payload["name"] == "b"
            assert await broker.limit_figures() == {}
            async with coredis.Redis.from_url(
                parse_redis_url(redis_url).client_url, decode_responses=True
            ) as raw:
                assert await raw.hexists(broker.keys.limrun, '"t"')
            await broker.complete(first, None)
            await broker.complete(second, None)
