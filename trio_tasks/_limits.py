"""Per-type limits (``concurrency=``, ``rate=``) and priority aging: what the processor hands
to its broker (:class:`DispatchRules`), and what ``/stats`` shows of them (:class:`LimitFigures`).

The rate is a *sliding window*: a type limited to N starts per period starts a job only if
fewer than N of its jobs started in the period just before. It is exact (no window ever holds
more than N starts, unlike fixed windows, which allow 2N across a boundary, or a token bucket,
which allows a burst of N on top of the refill) and costs O(1) per start with the last N start
times kept (a ring): the N-th most recent start must be at least a period old.

Brokers enforce both: the memory and SQLite brokers with :class:`LocalGate` (per process), the
Redis broker in its Lua functions (cluster-wide). See ``docs/scheduling.md``.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Mapping
from typing import Any

import attrs

from ._durations import parse_duration
from ._errors import InvalidValue
from ._job import Job, JobStatus

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
#: Most starts a rate may allow per period: its window keeps that many start times.
RATE_MAX = 100_000


@attrs.frozen
class Rate:
    """At most ``count`` starts per ``period`` seconds; ``text`` is how it was written."""

    count: int
    period: float
    text: str

    @classmethod
    def parse(cls, value: object, *, name: str = "rate") -> Rate:
        """Parse ``"N/s"``, ``"N/m"``, ``"N/h"`` or ``"N/<Go duration>"`` (``"10/30s"``).

        Raises:
            InvalidValue: anything else, a count that is not 1 to :data:`RATE_MAX`, or a period
                that is not > 0.
        """
        expected = 'expected "N/s", "N/m", "N/h" or "N/<duration>" such as "100/m" or "10/30s"'
        if isinstance(value, Rate):
            return value
        if not isinstance(value, str) or value.count("/") != 1:
            raise InvalidValue(f"{name}: {expected}, got {value!r}")
        count_text, unit = (part.strip() for part in value.split("/"))
        if not count_text.isdecimal() or not 1 <= int(count_text) <= RATE_MAX:
            raise InvalidValue(
                f"{name}: the count must be a whole number from 1 to {RATE_MAX}, got {value!r}"
            )
        period = _UNITS.get(unit)
        if period is None:
            try:
                period = parse_duration(unit, name=name)
            except InvalidValue:
                raise InvalidValue(f"{name}: {expected}, got {value!r}") from None
        if period <= 0:
            raise InvalidValue(f"{name}: the period must be > 0, got {value!r}")
        return cls(int(count_text), period, value.strip())


@attrs.frozen
class TypeLimit:
    """The limits of one job type: ``concurrency`` (running at once) and ``rate`` (starts per
    period); ``None`` for no such limit."""

    concurrency: int | None = None
    rate: Rate | None = None


def check_concurrency(value: object, *, name: str) -> int | None:
    """``value`` as a concurrency limit (a positive int, or ``None``).

    Raises:
        InvalidValue: anything else.
    """
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidValue(f"concurrency of job type {name!r} must be an int >= 1, got {value!r}")
    return value


@attrs.frozen
class DispatchRules:
    """How a broker picks the next job beyond strict priority: the per-type ``limits`` and
    ``aging`` (seconds a pending job waits to be taken as one priority level higher; ``0``:
    off, strict priority). Handed to :meth:`Broker.set_dispatch` before :meth:`Broker.run`."""

    limits: Mapping[str, TypeLimit] = attrs.field(factory=dict)
    aging: float = 0.0
    #: Registered types without limits: a shared broker removes the limits that a node with an
    #: older registry set for them.
    unlimited: frozenset[str] = frozenset()


#: No limits, strict priority: what a broker does unless told otherwise.
NO_RULES = DispatchRules()


@attrs.frozen
class LimitFigures:
    """One limited type at one moment: its limits, how many of its jobs run now and how many
    wait held back by a limit (pending, out of the queues, holding no worker)."""

    concurrency: int | None
    rate: str | None
    running: int
    held: int

    def to_json(self) -> dict[str, Any]:
        """The JSON form of ``/stats`` (``limits.<type>``)."""
        return attrs.asdict(self)


def effective_priority(base: int, waited: float, aging: float) -> int:
    """The level a job of priority ``base`` that has waited ``waited`` seconds is taken at:
    one level higher per ``aging`` period waited, urgent (4) at most."""
    if waited <= 0:
        return base
    return min(4, base + int(waited // aging))


def runnable_since(job: Job) -> float:
    """When ``job`` became runnable: submitted, or at its ``run_at`` if that came later (as
    :func:`~trio_tasks._job.queue_wait` counts)."""
    run_at = job.run_at
    created = job.created_at
    return created if run_at is None or run_at < created else run_at


class _TypeState:
    """The state of one limited type in one process."""

    __slots__ = ("concurrency", "held", "held_ids", "limit", "period", "rate", "running", "starts")

    def __init__(self, limit: TypeLimit) -> None:
        self.limit = limit
        self.concurrency = limit.concurrency
        self.rate = limit.rate.count if limit.rate is not None else 0
        self.period = limit.rate.period if limit.rate is not None else 0.0
        self.running = 0
        #: The last ``rate`` start times, oldest first.
        self.starts: deque[float] = deque(maxlen=max(1, self.rate))
        #: Held-back jobs: (-priority, order held, job), the highest priority, earliest first.
        self.held: list[tuple[int, int, Job]] = []
        self.held_ids: set[str] = set()

    def free(self, now: float, want: float = 1) -> int | float:
        """How many more jobs may start now, up to ``want`` (``inf``: no limit says otherwise).

        O(1) for ``want=1``: the starts are kept oldest first, so counting those outside the
        window stops at the first inside it.
        """
        free: int | float = want
        if self.concurrency is not None:
            free = min(free, self.concurrency - self.running)
        if self.rate and free >= 1:
            starts = self.starts
            allowed = self.rate - len(starts)
            horizon = now - self.period
            for at in starts:
                if allowed >= free or at > horizon:
                    break
                allowed += 1
            free = min(free, allowed)
        return free

    def rate_due(self) -> float | None:
        """When the rate lets the next job start, if it does not now (by the oldest start)."""
        if not self.rate or len(self.starts) < self.rate:
            return None
        return self.starts[0] + self.period


class LocalGate:
    """Per-type limits in one process (the memory and SQLite brokers).

    A worker's fetch asks :meth:`admit` for each job it takes; a job refused is *held*: out of
    the queues, holding no worker, counted pending. :meth:`finished` (a running job of a limited
    type ended) and :meth:`due` (the rate lets more start) return the held jobs that may start
    now, highest priority and earliest held first, for the broker to queue at the front again.
    """

    def __init__(self, limits: Mapping[str, TypeLimit]) -> None:
        self.types = {name: _TypeState(limit) for name, limit in limits.items()}
        self._order = itertools.count()

    def admit(self, job: Job, now: float) -> bool:
        """Start ``job`` if its type's limits allow it now (counted running); else hold it."""
        state = self.types.get(job.type)
        if state is None:
            return True
        if state.free(now) >= 1:
            state.running += 1
            if state.rate:
                state.starts.append(now)
            return True
        heapq.heappush(state.held, (-int(job.priority), next(self._order), job))
        state.held_ids.add(job.id)
        return False

    def is_limited(self, job_type: str) -> bool:
        """Whether jobs of ``job_type`` are counted (have limits)."""
        return job_type in self.types

    def finished(self, job: Job, now: float) -> list[Job]:
        """A running job of a limited type ended (any way): free its slot; the held jobs of
        its type that may start now."""
        state = self.types[job.type]
        state.running -= 1
        return self._release(state, now)

    def discard(self, job: Job) -> bool:
        """Forget a held job (cancelled): whether it was held. It stays in the heap, skipped."""
        state = self.types.get(job.type)
        if state is None or job.id not in state.held_ids:
            return False
        state.held_ids.discard(job.id)
        return True

    def due(self, now: float) -> list[Job]:
        """The held jobs of every type whose rate window has opened."""
        ready: list[Job] = []
        for state in self.types.values():
            if state.held_ids:
                due = state.rate_due()
                if due is None or due <= now:
                    ready += self._release(state, now)
        return ready

    def next_due(self) -> float | None:
        """The earliest time a rate lets a held job start, if any waits for one."""
        times = [
            due
            for state in self.types.values()
            if state.held_ids and (due := state.rate_due()) is not None
        ]
        return min(times) if times else None

    def _release(self, state: _TypeState, now: float) -> list[Job]:
        free = state.free(now, len(state.held_ids))
        ready: list[Job] = []
        held = state.held
        while held and free >= 1:
            job = heapq.heappop(held)[2]
            if job.id in state.held_ids and job.status is JobStatus.PENDING:
                state.held_ids.discard(job.id)
                ready.append(job)
                free -= 1
        if not state.held_ids:
            held.clear()  # only cancelled tombstones left
        return ready

    def held_count(self, job_type: str) -> int:
        """Jobs of ``job_type`` held back now."""
        state = self.types.get(job_type)
        return 0 if state is None else len(state.held_ids)

    def figures(self) -> dict[str, LimitFigures]:
        """Each limited type's limits, running and held jobs."""
        return {
            name: LimitFigures(
                state.concurrency,
                None if state.limit.rate is None else state.limit.rate.text,
                state.running,
                len(state.held_ids),
            )
            for name, state in sorted(self.types.items())
        }
