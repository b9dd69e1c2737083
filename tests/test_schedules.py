"""Periodic jobs (issue 12, part 1): tick arithmetic (DST included), the schedule loop under
the autojump clock (catch-up, pause), and the state kept by the memory and SQLite brokers."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trio

import trio_tasks
from trio_tasks import JobRequest, TaskRegistry
from trio_tasks._errors import InvalidValue
from trio_tasks._schedule_loop import run_schedules, schedule_views
from trio_tasks._schedules import build_schedule, load_schedules_file
from trio_tasks.brokers._base import Admission
from trio_tasks.brokers._memory import MemoryBroker
from trio_tasks.brokers._sqlite import SqliteBroker

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args: int) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


def local(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, BERLIN).isoformat()


# -- tick arithmetic ---------------------------------------------------------------------------


def test_every_ticks_at_multiples_of_the_interval() -> None:
    schedule = build_schedule("s", job_type="t", every="30s")
    assert schedule.next_tick(100.0) == 120.0
    assert schedule.next_tick(120.0) == 150.0
    assert schedule.last_tick(149.9) == 120.0
    assert schedule.last_tick(150.0) == 150.0
    assert schedule.expression == "every 30s"
    assert schedule.job_id(120.0) == "sched:s:1970-01-01T00:02:00Z"
    assert build_schedule("h", job_type="t", every="500ms").job_id(0.5).endswith("00:00:00.500Z")


def test_cron_ticks_in_utc() -> None:
    schedule = build_schedule("s", job_type="t", cron="*/15 * * * *")
    start = datetime(2025, 1, 1, 12, 0, tzinfo=UTC).timestamp()
    assert schedule.next_tick(start) == start + 900
    assert schedule.next_tick(start + 0.5) == start + 900
    assert schedule.last_tick(start + 899) == start
    assert schedule.last_tick(start) == start


def test_daily_job_across_spring_forward_runs_once_at_three() -> None:
    # 2025-03-30 in Berlin: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
    schedule = build_schedule("d", job_type="t", cron="30 2 * * *", timezone="Europe/Berlin")
    ticks = [schedule.next_tick(berlin(2025, 3, 28, 12))]
    for _ in range(3):
        ticks.append(schedule.next_tick(ticks[-1]))
    assert [local(t) for t in ticks] == [
        "2025-03-29T02:30:00+01:00",
        "2025-03-30T03:00:00+02:00",  # the skipped 02:30 runs at the end of the gap, once
        "2025-03-31T02:30:00+02:00",
        "2025-04-01T02:30:00+02:00",
    ]
    assert ticks[2] - ticks[1] == 23.5 * 3600


def test_daily_job_across_fall_back_runs_once() -> None:
    # 2025-10-26 in Berlin: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    schedule = build_schedule("d", job_type="t", cron="30 2 * * *", timezone="Europe/Berlin")
    ticks = [schedule.next_tick(berlin(2025, 10, 25, 12))]
    for _ in range(2):
        ticks.append(schedule.next_tick(ticks[-1]))
    assert [local(t) for t in ticks] == [
        "2025-10-26T02:30:00+02:00",  # the first 02:30 only
        "2025-10-27T02:30:00+01:00",
        "2025-10-28T02:30:00+01:00",
    ]
    assert ticks[1] - ticks[0] == 25 * 3600


def test_hourly_wildcard_runs_in_both_repeated_hours() -> None:
    schedule = build_schedule("h", job_type="t", cron="0 * * * *", timezone="Europe/Berlin")
    first = schedule.next_tick(berlin(2025, 10, 26, 1, 30))
    ticks = [first]
    for _ in range(3):
        ticks.append(schedule.next_tick(ticks[-1]))
    # 02:00 CEST, 02:00 CET, 03:00 CET: one hour apart in real time, every time.
    assert [b - a for a, b in itertools.pairwise(ticks)] == [3600.0] * 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of cron and every"),
        ({"cron": "* * * * *", "every": "1s"}, "exactly one of cron and every"),
        ({"cron": "* * * *"}, "5-field"),
        ({"cron": "61 * * * *"}, "bad cron expression"),
        ({"every": "soon"}, "every"),
        ({"every": "1ms"}, "between 100ms"),
        ({"every": "1s", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"every": "1s", "retries": -1}, "retries"),
        ({"every": "1s", "priority": "extreme"}, "priority"),
    ],
)
def test_bad_schedules_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        build_schedule("s", job_type="t", **options)


def test_registry_refuses_a_name_twice() -> None:
    registry = TaskRegistry()
    registry.schedule("s", job_type="t", every="1m")
    with pytest.raises(InvalidValue, match="already registered"):
        registry.schedule("s", job_type="t", every="1h")
    with pytest.raises(InvalidValue, match="schedule name"):
        registry.schedule("no spaces", job_type="t", every="1h")


def test_schedules_file(tmp_path: Path) -> None:
    path = tmp_path / "schedules.toml"
    path.write_text(
        '[nightly]\njob_type = "report"\ncron = "30 2 * * *"\ntimezone = "Europe/Berlin"\n'
        '[ping]\njob_type = "sync"\nevery = "1m"\npayload = {a = 1}\ncatch_up = false\n'
    )
    nightly, ping = load_schedules_file(str(path))
    assert (nightly.cron, nightly.timezone) == ("30 2 * * *", "Europe/Berlin")
    assert (ping.every, ping.payload, ping.catch_up) == (60.0, {"a": 1}, False)
    path.write_text('[x]\njob_type = "t"\nevery = "1m"\ncolour = "red"\n')
    with pytest.raises(InvalidValue, match="unknown key"):
        load_schedules_file(str(path))
    path.write_text("[x\n")
    with pytest.raises(InvalidValue, match="not valid TOML"):
        load_schedules_file(str(path))
    with pytest.raises(InvalidValue, match="cannot read"):
        load_schedules_file(str(tmp_path / "missing.toml"))


# -- the loop, under the autojump clock ----------------------------------------------------------


class FixedWall:
    """Wall time ``start`` at Trio time 0 (the autojump clock's start)."""

    def __init__(self, start: float) -> None:
        self.offset = start - trio.current_time()

    def now(self) -> float:
        return self.offset + trio.current_time()

    def to_trio(self, wall: float) -> float:
        return wall - self.offset


class Recorder:
    """A submit function keeping one job per id, as a broker does."""

    def __init__(self, wall: FixedWall) -> None:
        self.wall = wall
        self.ids: list[str] = []
        self.at: list[float] = []
        self.requests: list[JobRequest] = []

    async def __call__(self, requests: Sequence[JobRequest]) -> list[Admission]:
        await trio.lowlevel.checkpoint()
        (request,) = requests
        created = request.job_id not in self.ids
        if created:
            assert request.job_id is not None
            self.ids.append(request.job_id)
            self.at.append(self.wall.now())
            self.requests.append(request)
        job = trio_tasks.Job(
            id=request.job_id or "",
            type=request.type,
            priority=request.priority,
            payload=request.payload,
            max_attempts=1,
            timeout=60.0,
            created_at=self.wall.now(),
        )
        return [Admission(job, created)]


def _broker() -> MemoryBroker:
    return MemoryBroker(max_concurrency=10, result_ttl=60, result_max_jobs=10)


async def _run_for(
    seconds: float, registry: TaskRegistry, broker: Any, recorder: Recorder, wall: FixedWall
) -> None:
    with trio.move_on_after(seconds):
        await run_schedules(
            list(registry.schedules.values()),
            registry=registry,
            broker=broker,
            submit=recorder,
            clock=wall,
            log=trio_tasks._log.library_logger(),
        )


def _registry(**options: Any) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("t")
    async def handler(ctx: trio_tasks.JobContext) -> None: ...

    registry.schedule("s", job_type="t", **options)
    return registry


async def test_loop_submits_each_tick_across_dst(autojump_clock: trio.testing.MockClock) -> None:
    registry = _registry(cron="30 2 * * *", timezone="Europe/Berlin", payload={"k": 1})
    wall = FixedWall(berlin(2025, 3, 29, 0))
    recorder = Recorder(wall)
    broker = _broker()
    await _run_for(3 * 86400, registry, broker, recorder, wall)
    assert [local(t) for t in recorder.at] == [
        "2025-03-29T02:30:00+01:00",
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T02:30:00+02:00",
    ]
    assert recorder.ids[1] == "sched:s:2025-03-30T01:00:00Z"
    assert recorder.requests[0].payload == {"k": 1}
    state = await broker.schedule_state("s")
    assert state.last_job_id == recorder.ids[-1]
    assert state.last_tick == recorder.at[-1]


async def test_two_loops_on_one_broker_submit_each_tick_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = _registry(every="10s")
    wall = FixedWall(1_000_005.0)
    recorder, broker = Recorder(wall), _broker()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_run_for, 60.0, registry, broker, recorder, wall)
        nursery.start_soon(_run_for, 60.0, registry, broker, recorder, wall)
    assert recorder.at == [1_000_010.0 + 10 * i for i in range(6)]
    assert len(set(recorder.ids)) == 6


async def test_catch_up_runs_the_latest_missed_tick_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = _registry(every="1m")
    broker = _broker()
    wall = FixedWall(6_000.0)
    # The last tick dealt with was an hour before start-up: 59 ticks were missed.
    await broker.record_tick("s", 2_400.0, "sched:s:old")
    recorder = Recorder(wall)
    await _run_for(90.0, registry, broker, recorder, wall)
    assert recorder.at == [6_000.0, 6_060.0]
    assert recorder.ids[0] == registry.schedules["s"].job_id(6_000.0)


async def test_catch_up_false_skips_missed_ticks(autojump_clock: trio.testing.MockClock) -> None:
    registry = _registry(every="1m", catch_up=False)
    broker = _broker()
    await broker.record_tick("s", 2_400.0, "sched:s:old")
    wall = FixedWall(6_030.0)
    recorder = Recorder(wall)
    await _run_for(60.0, registry, broker, recorder, wall)
    assert recorder.at == [6_060.0]


async def test_first_start_runs_no_past_tick(autojump_clock: trio.testing.MockClock) -> None:
    registry = _registry(every="1m")
    wall = FixedWall(6_030.0)
    recorder = Recorder(wall)
    await _run_for(20.0, registry, _broker(), recorder, wall)
    assert recorder.at == []


async def test_pause_and_resume(autojump_clock: trio.testing.MockClock) -> None:
    registry = _registry(every="10s")
    broker = _broker()
    wall = FixedWall(1_000.0)
    recorder = Recorder(wall)

    async def operator() -> None:
        await trio.sleep(15)  # after the tick of 1010
        await broker.set_schedule_paused("s", True)
        await trio.sleep(30)  # 1020, 1030, 1040 skipped
        await broker.set_schedule_paused("s", False)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(operator)
        nursery.start_soon(_run_for, 65.0, registry, broker, recorder, wall)
    assert recorder.at == [1_010.0, 1_050.0, 1_060.0]
    state = await broker.schedule_state("s")
    assert (state.paused, state.last_tick) == (False, 1_060.0)
    # A skipped tick counts as dealt with: a restart does not catch it up.
    await broker.set_schedule_paused("s", True)
    wall2 = FixedWall(2_000.0)
    recorder2 = Recorder(wall2)
    await _run_for(25.0, registry, broker, recorder2, wall2)
    assert recorder2.at == []
    assert (await broker.schedule_state("s")).last_tick == 2_020.0


async def test_unknown_job_type_is_left_out(autojump_clock: trio.testing.MockClock) -> None:
    registry = TaskRegistry()

    @registry.task("t")
    async def handler(ctx: trio_tasks.JobContext) -> None: ...

    registry.schedule("s", job_type="nope", every="1s")
    wall = FixedWall(0.0)
    recorder = Recorder(wall)
    await _run_for(5.0, registry, _broker(), recorder, wall)
    assert recorder.ids == []


async def test_processor_runs_schedules_and_stops_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = _registry(every="1s", retries=0)
    async with trio_tasks.open_processor(registry, workers=2) as processor:
        await trio.sleep(5.5)
        views = await schedule_views(registry, processor.broker, processor.clock.now())
    jobs = await processor.list_jobs(type="t")
    assert 5 <= len(jobs) <= 6
    assert all(job.id.startswith("sched:s:") for job in jobs)
    assert all(job.status is trio_tasks.JobStatus.COMPLETED for job in jobs)
    assert views[0].state.last_job_id == max(job.id for job in jobs)
    assert views[0].to_json()["expression"] == "every 1s"


async def test_producer_runs_no_schedule(autojump_clock: trio.testing.MockClock) -> None:
    registry = _registry(every="1s")
    async with trio_tasks.open_processor(registry, workers=0) as processor:
        await trio.sleep(3.5)
        assert await processor.list_jobs() == []


# -- state kept by the SQLite broker -----------------------------------------------------------


async def test_sqlite_keeps_schedule_state_across_restarts(tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.db")

    async def session(action: Any) -> Any:
        broker = SqliteBroker(path, max_concurrency=10, result_ttl=60, result_max_jobs=10)
        async with trio_tasks.open_processor(_registry(every="1h"), broker=broker, workers=1):
            return await action(broker)

    async def write(broker: SqliteBroker) -> None:
        await broker.set_schedule_paused("s", True)
        await broker.record_tick("s", 3600.0, "sched:s:x")
        await broker.record_tick("s", 0.0, None)  # older: ignored

    await session(write)
    state = await session(lambda broker: broker.schedule_state("s"))
    assert (state.paused, state.last_tick, state.last_job_id) == (True, 3600.0, "sched:s:x")
