"""The schedule loop: every node with workers submits each tick of each schedule.

No leader is elected. Each tick's job id derives from the schedule and the tick
(:meth:`~._schedules.Schedule.job_id`), so when several nodes submit the same tick the broker
keeps one job (idempotent submission) and hands the others that job back. The paused flag and
the last tick live in the broker, so all nodes obey a pause and a restarted node knows what
it missed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import attrs
import trio

from ._errors import BrokerUnavailable, TrioTasksError
from ._job import format_time
from ._registry import TaskRegistry
from ._request import JobRequest
from ._schedules import Schedule, ScheduleState
from .brokers._base import Admission, Broker

Submit = Callable[[Sequence[JobRequest]], Awaitable[list[Admission]]]


class Clock(Protocol):
    """Wall time that follows Trio's clock (:class:`~._clock.WallClock`)."""

    def now(self) -> float: ...

    def to_trio(self, wall: float) -> float: ...


@attrs.frozen
class ScheduleView:
    """A schedule as ``GET /schedules`` shows it: its definition, shared state, next run."""

    schedule: Schedule
    state: ScheduleState
    next_run: float

    def to_json(self) -> dict[str, Any]:
        """The JSON form (times in RFC 3339, UTC)."""
        schedule, state = self.schedule, self.state
        return {
            "name": schedule.name,
            "job_type": schedule.job_type,
            "expression": schedule.expression,
            "timezone": schedule.timezone,
            "priority": str(schedule.priority),
            "catch_up": schedule.catch_up,
            "paused": state.paused,
            "next_run": format_time(self.next_run),
            "last_run": format_time(state.last_tick),
            "last_job_id": state.last_job_id,
        }


async def run_schedules(
    schedules: Sequence[Schedule],
    *,
    registry: TaskRegistry,
    broker: Broker,
    submit: Submit,
    clock: Clock,
    log: Any,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one task per schedule until cancelled (the processor cancels it when it stops).

    A schedule of a job type the registry cannot run is logged as an error and left out.
    """
    async with trio.open_nursery() as nursery:
        for schedule in schedules:
            if registry.find(schedule.job_type) is None:
                log.error(
                    "schedule left out: unknown job type",
                    schedule=schedule.name,
                    job_type=schedule.job_type,
                )
                continue
            ticker = _Ticker(schedule, broker, submit, clock, log)
            nursery.start_soon(ticker.run, name=f"trio_tasks schedule {schedule.name}")
        task_status.started()


@attrs.define(eq=False)
class _Ticker:
    schedule: Schedule
    broker: Broker
    submit: Submit
    clock: Clock
    log: Any

    async def run(self) -> None:
        schedule, clock = self.schedule, self.clock
        now = clock.now()
        if schedule.catch_up:
            # After downtime, the most recent missed tick runs once (only that one: no flood).
            # A schedule never run before has missed nothing.
            missed = schedule.last_tick(now)
            state = await self._state()
            if (
                missed is not None
                and state is not None
                and state.last_tick is not None
                and missed > state.last_tick
            ):
                await self._fire(missed, state)
        cursor = now
        while True:
            tick = schedule.next_tick(cursor)
            now = clock.now()
            if tick <= now:
                # Late (the loop was held up, the broker unreachable): the latest due tick
                # only, not every one in between.
                latest = schedule.last_tick(now)
                tick = tick if latest is None else latest
            await trio.sleep_until(clock.to_trio(tick))
            await self._fire(tick, await self._state())
            cursor = tick

    async def _state(self) -> ScheduleState | None:
        try:
            return await self.broker.schedule_state(self.schedule.name)
        except BrokerUnavailable as exc:
            self.log.warning(
                "schedule state unavailable", schedule=self.schedule.name, error=str(exc)
            )
            return None

    async def _fire(self, tick: float, state: ScheduleState | None) -> None:
        schedule = self.schedule
        name = schedule.name
        if state is None:
            return  # the broker is unreachable: a submission would fail as well
        job_id = None
        if not state.paused:
            request = JobRequest(
                type=schedule.job_type,
                payload=dict(schedule.payload),
                priority=schedule.priority,
                timeout=schedule.timeout,
                retries=schedule.retries,
                job_id=schedule.job_id(tick),
            )
            try:
                (admission,) = await self.submit([request])
            except TrioTasksError as exc:
                # Queue full, shutting down, broker unreachable: this tick is lost, the
                # next one is tried as usual.
                self.log.warning(
                    "scheduled job not submitted",
                    schedule=name,
                    tick=format_time(tick),
                    error=f"{type(exc).__name__}: {exc}",
                )
                return
            job_id = admission.job.id
            if admission.created:
                self.log.info("scheduled job submitted", schedule=name, job_id=job_id)
        try:
            await self.broker.record_tick(name, tick, job_id)
        except BrokerUnavailable as exc:
            self.log.warning("schedule tick not recorded", schedule=name, error=str(exc))


async def schedule_views(
    registry: TaskRegistry, broker: Broker, now: float, name: str | None = None
) -> list[ScheduleView]:
    """Every schedule of ``registry`` (or only ``name``) with its shared state and next run,
    sorted by name.

    Raises:
        BrokerUnavailable: a shared broker cannot be reached.
    """
    views = []
    for key in sorted(registry.schedules) if name is None else [name]:
        schedule = registry.schedules[key]
        state = await broker.schedule_state(key)
        views.append(ScheduleView(schedule, state, schedule.next_tick(now)))
    return views


async def run_processor_schedules(processor: Any, scope: trio.CancelScope, log: Any) -> None:
    """Run the schedule loop of ``processor`` (a :class:`~._processor.Processor`) inside
    ``scope``, which the processor cancels when it begins to stop."""
    with scope:
        await run_schedules(
            list(processor.registry.schedules.values()),
            registry=processor.registry,
            broker=processor.broker,
            submit=processor.submit_many,
            clock=processor.clock,
            log=log,
        )
