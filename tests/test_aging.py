"""Starvation control (``PRIORITY_AGING``): a pending job is taken one priority level higher per
aging period waited, urgent at most; strict priority when off. Memory on ``MockClock``; Redis on
a real redis-server with jobs whose enqueue times the test sets (the wait is read from them)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from test_redis_broker import running

import trio_tasks
from trio_tasks import JobContext, Priority, TaskRegistry
from trio_tasks._config import Config, build_config
from trio_tasks._errors import InvalidValue
from trio_tasks._job import Job
from trio_tasks._limits import DispatchRules, effective_priority
from trio_tasks._request import new_job_id


def test_effective_priority_climbs_one_level_per_period_up_to_urgent() -> None:
    assert effective_priority(1, 0.0, 10.0) == 1
    assert effective_priority(1, 9.99, 10.0) == 1
    assert effective_priority(1, 10.0, 10.0) == 2
    assert effective_priority(1, 25.0, 10.0) == 3
    assert effective_priority(1, 1e9, 10.0) == 4
    assert effective_priority(3, -5.0, 10.0) == 3


def test_priority_aging_is_a_setting() -> None:
    assert Config().priority_aging == 0.0
    assert build_config(None, priority_aging="1m").priority_aging == 60.0
    with pytest.raises(InvalidValue):
        build_config(None, priority_aging="-1s")


class Order:
    """``block`` holds the only worker until :attr:`go`; ``record`` notes its name."""

    def __init__(self) -> None:
        self.tasks = TaskRegistry()
        self.order: list[str] = []
        self.blocking = trio.Event()
        self.go = trio.Event()

        @self.tasks.task("block")
        async def block(ctx: JobContext) -> None:
            self.blocking.set()
            await self.go.wait()

        @self.tasks.task("record")
        async def record(ctx: JobContext) -> None:
            self.order.append(ctx.payload["name"])


async def _run_order(aging: str | None, wait_before_fresh: float) -> list[str]:
    """A low job waits ``wait_before_fresh`` seconds, then a high and a normal job arrive;
    the order in which the worker takes them once free."""
    lab = Order()
    async with trio_tasks.open_processor(lab.tasks, workers=1, priority_aging=aging) as p:
        await p.submit("block")
        await lab.blocking.wait()
        jobs = [await p.submit("record", {"name": "old-low"}, priority="low")]
        await trio.sleep(wait_before_fresh)
        jobs.append(await p.submit("record", {"name": "fresh-high"}, priority="high"))
        jobs.append(await p.submit("record", {"name": "fresh-normal"}, priority="normal"))
        lab.go.set()
        for job in jobs:
            await p.wait(job.id)
    return lab.order


async def test_an_old_low_job_beats_a_fresh_high_job_after_enough_periods(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 30 s at 10 s per level: low + 3 = urgent, above high.
    assert await _run_order("10s", 30.0) == ["old-low", "fresh-high", "fresh-normal"]


async def test_an_equal_effective_priority_goes_to_the_higher_base_priority(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 25 s: low + 2 = high, equal to the fresh high job, whose base priority is higher.
    assert await _run_order("10s", 25.0) == ["fresh-high", "old-low", "fresh-normal"]
    # 15 s: low + 1 = normal: equal to the fresh normal job, whose base priority is higher.
    assert await _run_order("10s", 15.0) == ["fresh-high", "fresh-normal", "old-low"]
    # 5 s: not yet one period.
    assert await _run_order("10s", 5.0) == ["fresh-high", "fresh-normal", "old-low"]


async def test_strict_priority_when_aging_is_off(autojump_clock: trio.testing.MockClock) -> None:
    assert await _run_order(None, 250.0) == ["fresh-high", "fresh-normal", "old-low"]


async def test_aging_keeps_fifo_within_one_level(autojump_clock: trio.testing.MockClock) -> None:
    lab = Order()
    async with trio_tasks.open_processor(lab.tasks, workers=1, priority_aging="10s") as p:
        await p.submit("block")
        await lab.blocking.wait()
        jobs = []
        for i in range(3):
            jobs.append(await p.submit("record", {"name": f"low-{i}"}, priority="low"))
            await trio.sleep(11)
        jobs.append(await p.submit("record", {"name": "urgent"}, priority="urgent"))
        lab.go.set()
        for job in jobs:
            await p.wait(job.id)
    # low-0 has waited 33 s: urgent, as the urgent job, whose base priority is higher; then
    # the lows in order (low-1 is high after 22 s, low-2 normal after 11 s).
    assert lab.order == ["urgent", "low-0", "low-1", "low-2"]


# -- Redis --------------------------------------------------------------------------------------


@asynccontextmanager
async def _redis_broker(url: str, aging: float) -> AsyncIterator[trio_tasks.RedisBroker]:
    broker = trio_tasks.RedisBroker(url, retry_cap=0.2)
    broker.set_dispatch(DispatchRules(aging=aging))
    async with running(broker):
        yield broker


def _job(name: str, priority: Priority, waited: float) -> Job:
    """A job enqueued ``waited`` seconds ago (its ``created_at``: what aging reads)."""
    return Job(
        id=f"{name}-{new_job_id()}",
        type="t",
        priority=priority,
        payload={"name": name},
        max_attempts=1,
        timeout=60.0,
        created_at=time.time() - waited,
    )


@pytest.mark.redis
@pytest.mark.parametrize(
    ("aging", "waited", "expected"),
    [
        (10.0, 35.0, ["old-low", "fresh-high", "fresh-normal"]),
        (10.0, 25.0, ["fresh-high", "old-low", "fresh-normal"]),
        (10.0, 5.0, ["fresh-high", "fresh-normal", "old-low"]),
        (0.0, 10_000.0, ["fresh-high", "fresh-normal", "old-low"]),
    ],
)
async def test_aging_on_redis_reads_the_wait_from_the_jobs_timestamps(
    redis_url: str, aging: float, waited: float, expected: list[str]
) -> None:
    with trio.fail_after(10):
        async with _redis_broker(redis_url, aging) as broker:
            await broker.enqueue(
                [
                    _job("old-low", Priority.LOW, waited),
                    _job("fresh-high", Priority.HIGH, 0.0),
                    _job("fresh-normal", Priority.NORMAL, 0.0),
                ]
            )
            taken = [(await broker.fetch(f"w{i}")).job.payload["name"] for i in range(3)]
    assert taken == expected


@pytest.mark.redis
async def test_a_retry_ages_from_its_run_at_on_redis(redis_url: str) -> None:
    with trio.fail_after(10):
        async with _redis_broker(redis_url, 10.0) as broker:
            # Created long ago, but runnable (its run_at) only now: it has not waited.
            old = _job("retried-low", Priority.LOW, 1000.0)
            old.run_at = time.time() - 1.0
            await broker.enqueue([old, _job("fresh-normal", Priority.NORMAL, 0.0)])
            first = await broker.fetch("w")
    assert first.job.payload["name"] == "fresh-normal"
