"""Per-type limits (``concurrency=``, ``rate=``) on every broker: the cap holds, a held-back job
holds no worker and delays no other type, every end of a run frees its slot; the figures show
in ``/stats`` and ``/metrics``.

Behaviour tests take ``make_processor`` and ``behaviour_clock`` (tests/conftest.py): memory on
an autojump ``MockClock``, SQLite and Redis on the real clock, sequenced with events.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio
import trio.testing

import trio_tasks
from trio_tasks import JobContext, JobStatus, PermanentError, Processor, TaskRegistry
from trio_tasks._limits import LimitFigures, Rate
from trio_tasks.http import create_app

MakeProcessor = Callable[..., AbstractAsyncContextManager[Processor]]
LIMIT = 20


class Capped:
    """A registry with ``capped`` (limited as asked) and ``other`` (no limits); ``capped``
    counts how many of its handlers run at once and waits for :attr:`go`."""

    def __init__(self, **limits: Any) -> None:
        self.tasks = TaskRegistry()
        self.running = 0
        self.peak = 0
        self.started: list[str] = []
        self.go = trio.Event()
        self.first = trio.Event()
        self.tasks.register("capped", self._capped, **limits)
        self.tasks.register("other", self._other)

    async def _capped(self, ctx: JobContext) -> str:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.started.append(ctx.payload.get("name", ctx.job.id))
        self.first.set()
        try:
            await self.go.wait()
        finally:
            self.running -= 1
        return "done"

    async def _other(self, ctx: JobContext) -> str:
        await trio.lowlevel.checkpoint()
        return "other"


async def _running_count(processor: Processor, n: int) -> None:
    """Wait until ``capped`` reports ``n`` jobs running (its figures are the broker's)."""
    while True:
        stats = await processor.stats()
        if stats.limits.get("capped") and stats.limits["capped"].running >= n:
            return
        await trio.sleep(0.01)


async def _held_count(processor: Processor, job_type: str, n: int) -> None:
    """Wait until ``n`` jobs of ``job_type`` are held back."""
    while True:
        figures = (await processor.stats()).limits.get(job_type)
        if figures is not None and figures.held >= n:
            return
        await trio.sleep(0.01)


# -- decoration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "needle"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": -1}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"rate": "100"}, "rate"),
        ({"rate": "0/m"}, "rate"),
        ({"rate": "10/d"}, "rate"),
        ({"rate": "10/0s"}, "rate"),
        ({"rate": 10}, "rate"),
    ],
)
def test_bad_limits_are_refused_at_decoration_time(limits: dict[str, Any], needle: str) -> None:
    tasks = TaskRegistry()
    with pytest.raises(ValueError, match=needle) as caught:
        tasks.task("t", **limits)
    assert isinstance(caught.value, trio_tasks.TrioTasksError)
    assert "t" not in tasks


def test_rates_read_units_and_go_durations() -> None:
    assert Rate.parse("100/m") == Rate(100, 60.0, "100/m")
    assert Rate.parse("5/s").period == 1.0
    assert Rate.parse("2/h").period == 3600.0
    assert Rate.parse("10/30s") == Rate(10, 30.0, "10/30s")
    assert Rate.parse("3/1m30s").period == 90.0
    tasks = TaskRegistry()

    @tasks.task("t", concurrency=3, rate="100/m")
    async def t(ctx: JobContext) -> None: ...

    spec = tasks.get("t")
    assert (spec.concurrency, spec.rate) == (3, Rate(100, 60.0, "100/m"))
    assert set(tasks.limits()) == {"t"}


# -- behaviour on every broker ---------------------------------------------------------------


async def test_the_concurrency_cap_holds_and_held_jobs_hold_no_worker(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    lab = Capped(concurrency=2)
    with trio.fail_after(LIMIT):
        async with make_processor(lab.tasks, workers=4) as processor:
            capped = [await processor.submit("capped", {"name": f"c{i}"}) for i in range(8)]
            await _running_count(processor, 2)
            # Two workers are free: a job of another type queued behind the six held ones runs.
            other = await processor.submit("other")
            assert (await processor.wait(other.id)).status is JobStatus.COMPLETED
            stats = await processor.stats()
            assert stats.limits["capped"] == LimitFigures(2, None, 2, 6)
            assert lab.running == 2
            assert stats.queued[trio_tasks.Priority.NORMAL] == 6  # held jobs are pending
            assert [(await processor.get(j.id)).status for j in capped].count(
                JobStatus.PENDING
            ) == 6
            lab.go.set()
            done = [await processor.wait(j.id) for j in capped]
    assert all(job.status is JobStatus.COMPLETED for job in done)
    assert lab.peak == 2
    assert len(lab.started) == 8


async def test_a_capped_backlog_does_not_delay_another_type(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    lab = Capped(concurrency=1)
    with trio.fail_after(LIMIT):
        async with make_processor(lab.tasks, workers=2) as processor:
            capped = [await processor.submit("capped", {"name": f"c{i}"}) for i in range(10)]
            await lab.first.wait()
            other = await processor.submit("other")
            # Runs while the first capped job still runs: the nine others behind it are held.
            finished = await processor.wait(other.id)
            assert finished.status is JobStatus.COMPLETED
            assert lab.started == ["c0"]
            assert lab.running == 1
            assert (await processor.get(capped[0].id)).status is JobStatus.RUNNING
            lab.go.set()
            for job in capped:
                await processor.wait(job.id)
    # FIFO among the held jobs is kept.
    assert lab.started == [f"c{i}" for i in range(10)]
    assert lab.peak == 1


async def test_held_jobs_keep_priority_order(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    lab = Capped(concurrency=1)
    with trio.fail_after(LIMIT):
        async with make_processor(lab.tasks, workers=3) as processor:
            first = await processor.submit("capped", {"name": "first"})
            await lab.first.wait()
            names = [("low", "low"), ("n1", "normal"), ("urgent", "urgent"), ("n2", "normal")]
            jobs = [
                await processor.submit("capped", {"name": name}, priority=priority)
                for name, priority in names
            ]
            # Every one of them has been fetched and held (the other workers are free).
            await _held_count(processor, "capped", 4)
            lab.go.set()
            for job in [first, *jobs]:
                await processor.wait(job.id)
    assert lab.started == ["first", "urgent", "n1", "n2", "low"]


async def test_every_end_of_a_run_frees_its_slot(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    tasks = TaskRegistry()
    cancel_running = trio.Event()
    seen: list[str] = []
    now = {"running": 0, "peak": 0}

    @tasks.task("one", concurrency=1, retries=1, timeout="0.5s")
    async def one(ctx: JobContext) -> str:
        kind = ctx.payload["kind"]
        seen.append(f"{kind}#{ctx.job.attempts}")
        now["running"] += 1
        now["peak"] = max(now["peak"], now["running"])
        try:
            if kind == "fail":
                raise PermanentError("no")
            if kind == "retry" and ctx.job.attempts == 1:
                raise RuntimeError("once more")
            if kind == "cancel":
                cancel_running.set()
            if kind in ("timeout", "cancel"):
                await trio.sleep_forever()
        finally:
            now["running"] -= 1
        return kind

    with trio.fail_after(LIMIT):
        async with make_processor(tasks, workers=3, retry_delay=0) as processor:
            kinds = ["fail", "retry", "timeout", "cancel", "ok"]
            jobs = {
                # The job to cancel waits longer than the others' timeout.
                kind: await processor.submit(
                    "one", {"kind": kind}, timeout=60 if kind == "cancel" else None
                )
                for kind in kinds
            }
            await cancel_running.wait()
            await processor.cancel(jobs["cancel"].id)
            # Each job runs only once the one before has freed the only slot: a slot kept by a
            # failure, a timeout, a retry or a cancellation would stop the rest here.
            final = {kind: await processor.wait(job.id) for kind, job in jobs.items()}
            figures = (await processor.stats()).limits["one"]
    assert {k: j.status for k, j in final.items()} == {
        "fail": JobStatus.FAILED,
        "retry": JobStatus.COMPLETED,
        "timeout": JobStatus.FAILED,
        "cancel": JobStatus.CANCELLED,
        "ok": JobStatus.COMPLETED,
    }
    assert final["timeout"].attempts == 2  # timed out twice: each freed the slot
    assert sorted(seen) == sorted(
        ["fail#1", "retry#1", "retry#2", "timeout#1", "timeout#2", "cancel#1", "ok#1"]
    )
    assert now["peak"] == 1
    assert (figures.running, figures.held) == (0, 0)


async def test_a_held_job_can_be_cancelled(
    make_processor: MakeProcessor, behaviour_clock: Any
) -> None:
    lab = Capped(concurrency=1)
    with trio.fail_after(LIMIT):
        async with make_processor(lab.tasks, workers=2) as processor:
            first = await processor.submit("capped", {"name": "first"})
            await lab.first.wait()
            held = await processor.submit("capped", {"name": "held"})
            last = await processor.submit("capped", {"name": "last"})
            await _held_count(processor, "capped", 2)
            cancelled = await processor.cancel(held.id)
            assert cancelled.status is JobStatus.CANCELLED
            assert (await processor.stats()).limits["capped"].held == 1
            lab.go.set()
            for job in (first, last):
                assert (await processor.wait(job.id)).status is JobStatus.COMPLETED
    assert lab.started == ["first", "last"]


# -- rate, on the memory broker's MockClock --------------------------------------------------


async def test_the_rate_caps_starts_per_sliding_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()
    starts: list[float] = []
    origin = trio.current_time()

    @tasks.task("paced", rate="2/10s")
    async def paced(ctx: JobContext) -> None:
        starts.append(trio.current_time() - origin)

    @tasks.task("free")
    async def free(ctx: JobContext) -> None:
        starts.append(-1.0)

    async with trio_tasks.open_processor(tasks, workers=3) as processor:
        jobs = [await processor.submit("paced") for _ in range(5)]
        await processor.wait(jobs[1].id)
        # Held for the rate, not holding a worker: another type runs at once.
        other = await processor.submit("free")
        await processor.wait(other.id)
        assert starts[-1] == -1.0
        assert (await processor.stats()).limits["paced"] == LimitFigures(None, "2/10s", 0, 3)
        for job in jobs:
            await processor.wait(job.id)
    paced_starts = [round(t, 6) for t in starts if t >= 0]
    assert paced_starts == [0.0, 0.0, 10.0, 10.0, 20.0]


# -- /stats and /metrics ---------------------------------------------------------------------


async def test_stats_and_metrics_show_the_limits(autojump_clock: trio.testing.MockClock) -> None:
    lab = Capped(concurrency=1, rate="100/m")
    async with trio_tasks.open_processor(lab.tasks, workers=2) as processor:
        client = create_app(processor).test_client()
        for i in range(3):
            await processor.submit("capped", {"name": f"c{i}"})
        await lab.first.wait()
        await _held_count(processor, "capped", 2)
        body = await (await client.get("/stats")).get_json()
        assert body["limits"] == {
            "capped": {"concurrency": 1, "rate": "100/m", "running": 1, "held": 2}
        }
        text = (await (await client.get("/metrics")).get_data()).decode()
        assert 'trio_tasks_type_running{type="capped"} 1.0' in text
        assert 'trio_tasks_type_held{type="capped"} 2.0' in text
        assert 'trio_tasks_type_concurrency_limit{type="capped"} 1.0' in text
        assert 'trio_tasks_type_rate_limit{period="m",type="capped"} 100.0' in text
        assert "other" not in body["limits"]
        lab.go.set()


async def test_stats_list_no_limits_when_no_type_has_any() -> None:
    tasks = TaskRegistry()
    tasks.register("t", lambda ctx: None)
    async with trio_tasks.open_processor(tasks, workers=1) as processor:
        client = create_app(processor).test_client()
        body = await (await client.get("/stats")).get_json()
        text = (await (await client.get("/metrics")).get_data()).decode()
    assert body["limits"] == {}
    assert "trio_tasks_type_running" not in text
