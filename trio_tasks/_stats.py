"""Statistics snapshots: per worker and per processor."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any

import attrs

from ._job import Priority
from ._limits import LimitFigures

#: How many recent samples the latency percentiles are computed over.
LATENCY_WINDOW = 4096


@attrs.frozen
class Percentiles:
    """Latency percentiles in seconds over the most recent jobs (``count`` samples)."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, samples: Iterable[float]) -> Percentiles:
        """Compute the percentiles of ``samples`` (nearest-rank)."""
        ordered = sorted(samples)
        n = len(ordered)
        if not n:
            return cls(0, None, None, None, None)

        def rank(q: float) -> float:
            # The ceil(q * n)-th smallest; the epsilon keeps 0.9 * 70 from rounding up to 64.
            return ordered[min(n - 1, max(0, math.ceil(q * n - 1e-9) - 1))]

        return cls(n, rank(0.50), rank(0.90), rank(0.99), ordered[-1])

    def to_json(self) -> dict[str, Any]:
        """The JSON form (seconds)."""
        return attrs.asdict(self)


class LatencyWindow:
    """The last :data:`LATENCY_WINDOW` samples of one latency; appending is O(1)."""

    __slots__ = ("_samples",)

    def __init__(self, size: int = LATENCY_WINDOW) -> None:
        self._samples: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        """Record one sample."""
        self._samples.append(seconds)

    def percentiles(self) -> Percentiles:
        """Percentiles of the samples in the window."""
        return Percentiles.of(self._samples)


@attrs.define(eq=False)
class WorkerState:
    """Live counters of one worker task (mutated by the worker itself)."""

    id: str
    state: str = "idle"
    current_job: str | None = None
    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    scope: Any = None

    def snapshot(self) -> WorkerStats:
        """A frozen copy."""
        return WorkerStats(
            self.id, self.state, self.current_job, self.processed, self.succeeded, self.failed
        )


@attrs.frozen
class WorkerStats:
    """One worker at one moment.

    ``state`` is ``idle``, ``busy`` or ``stopped``; ``processed`` counts attempts run,
    ``succeeded`` and ``failed`` their outcomes (a retried attempt counts as failed).
    """

    id: str
    state: str
    current_job: str | None
    processed: int
    succeeded: int
    failed: int


@attrs.frozen
class NodeView:
    """One live node of a shared broker, as of its last heartbeat (``seen_at``, POSIX seconds)."""

    id: str
    seen_at: float
    workers: tuple[WorkerStats, ...]
    counters: dict[str, int]


@attrs.frozen
class ClusterView:
    """What every node of a shared broker sees: the cluster-wide counters since the namespace was
    created (``submitted``, ``completed``, ``failed``, ``retried``, ``cancelled``,
    ``leases_expired``) and the live nodes."""

    totals: dict[str, int]
    nodes: tuple[NodeView, ...]


@attrs.frozen
class ProcessorStats:
    """A snapshot of a processor's counters.

    Counters are exact and count what went through this processor: ``submitted`` jobs accepted,
    ``completed``/``failed``/``cancelled`` jobs that reached that final state, ``retried``
    attempts that were followed by a retry. ``running`` jobs are on a worker now; ``queued`` maps
    each priority to its pending jobs and ``scheduled`` counts delayed jobs and waiting retries.
    ``queue_wait`` is from the time a job became runnable to its start; ``run_time`` is the
    handler's run time. ``uptime`` is in seconds.

    With a shared broker (Redis), ``running``, ``queued`` and ``scheduled`` are cluster-wide,
    ``cluster`` holds the cluster's counters and live nodes, and ``node_id`` names this node;
    the other counters stay this processor's own. Both are ``None`` on the memory broker.
    ``limits`` has each job type with a ``concurrency`` or ``rate`` limit: its limits, its jobs
    running and held back (cluster-wide on Redis).
    """

    submitted: int
    completed: int
    failed: int
    retried: int
    cancelled: int
    running: int
    queued: dict[Priority, int]
    scheduled: int
    workers: tuple[WorkerStats, ...]
    queue_wait: Percentiles
    run_time: Percentiles
    uptime: float
    node_id: str | None = None
    cluster: ClusterView | None = None
    #: Threads still running the handler of a job that timed out or was cancelled.
    threads_stuck: int = 0
    #: Each limited job type's limits, running and held-back jobs.
    limits: dict[str, LimitFigures] = attrs.field(factory=dict)

    @property
    def queue_size(self) -> int:
        """Jobs waiting in the queues, all priorities together."""
        return sum(self.queued.values())

    @property
    def workers_busy(self) -> int:
        """Workers running a job now."""
        return sum(1 for w in self.workers if w.state == "busy")
