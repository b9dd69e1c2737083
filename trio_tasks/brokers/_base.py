"""The broker interface: where jobs wait, how workers get them, where their records live.

The processor (workers, timeouts, retry decisions, statistics) talks to a broker only through
:class:`Broker`, so the memory broker and the Redis broker are interchangeable.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import attrs
import trio

from .._clock import WallClock
from .._job import Job, JobError, JobStatus, Priority
from .._limits import NO_RULES, DispatchRules, LimitFigures
from .._schedules import ScheduleState
from .._stats import ClusterView, WorkerStats


class Delivery(NamedTuple):
    """A job handed to one worker. ``token`` fences the lease of brokers that use leases.

    A named tuple, not an attrs class: one is made per job on the workers' hot path.
    """

    job: Job
    token: str | None = None


@attrs.frozen
class Admission:
    """The outcome of submitting one job: the job, and whether it is new (not an existing id)."""

    job: Job
    created: bool


@attrs.frozen
class QueueCounts:
    """How many jobs are waiting: per priority (``pending``) and for their time (``scheduled``)."""

    pending: dict[Priority, int]
    scheduled: int
    running: int


@attrs.frozen
class CancelOutcome:
    """What a cancellation did: ``job`` is the record after it. ``running`` is true when the job
    was running: its node must stop it, and the worker records the final ``cancelled`` state."""

    job: Job
    running: bool


class RecordStatus(enum.Enum):
    """What became of an outcome (complete, fail, cancel) that a worker asked a broker to record."""

    #: The broker has it: the job's record shows the outcome.
    RECORDED = "recorded"
    #: The write gave up (the broker was unreachable for too long): nothing changed, the lease
    #: expires and the job runs again.
    NOT_RECORDED = "not_recorded"
    #: Another node owns the job now (its lease expired and was taken): nothing changed here.
    LEASE_LOST = "lease_lost"


class Recording(NamedTuple):
    """The answer to recording an outcome: its ``status`` and the ``job`` as the broker now has
    it (as recorded; the worker's copy when not recorded; the other owner's record when the
    lease was lost). A named tuple: one is made per job on the workers' hot path."""

    status: RecordStatus
    job: Job


class BrokerHost(Protocol):
    """What a broker may ask of the processor that runs it."""

    clock: WallClock

    def on_cancel(self, job_id: str) -> None:
        """A running job of this node was cancelled (maybe from another node): stop it."""

    def workers(self) -> tuple[WorkerStats, ...]:
        """This node's workers now (published to the node registry of shared brokers)."""

    def counters(self) -> dict[str, int]:
        """This node's own counters (``submitted``, ``completed``, ``failed``…)."""


class Broker(abc.ABC):
    """Holds the queues and job records for a processor.

    Contract shared by all brokers:

    - :meth:`enqueue` admits all of its jobs or none (raising :class:`~trio_tasks.QueueFull`),
      returns existing jobs for ids that exist, never blocks on a full queue.
    - :meth:`fetch` waits until a job is due and hands out the oldest job of the highest
      non-empty priority, already marked ``running`` with ``attempts`` incremented.
    - Each delivery ends with exactly one of :meth:`complete`, :meth:`fail`,
      :meth:`finish_cancelled` or :meth:`release`. The processor calls them shielded from
      cancellation, so a broker may do I/O in them; they return a :class:`Recording` that says
      whether the outcome was recorded, and never raise for a broker that cannot be reached.
    - Every async method is a Trio checkpoint.
    - A stored record that cannot be decoded never raises out of a method or a background
      task: the broker turns the job into a ``failed`` one (see
      :func:`~trio_tasks._job.salvage_record`).
    - :meth:`run` holds the broker's background tasks (promoting due scheduled jobs, leases,
      cancellation signals) and calls ``host.on_cancel(job_id)`` when a running job is
      cancelled.
    - Dispatch rules (:meth:`set_dispatch`, given by the processor before :meth:`run`): a job
      whose type is at its ``concurrency`` or ``rate`` limit is not handed out: :meth:`fetch`
      *holds* it (still ``pending`` and counted so, out of the queues, holding no worker) and
      goes on to the next job, so no job of another type waits behind it. Every end of a
      running job of a limited type (complete, fail, a retry, cancel, release, a lease taken
      back) frees its slot, and held jobs go back to the front of their queue, in priority
      then arrival order, as slots free and as the rate window allows. With ``aging`` > 0 a
      pending job is taken as one priority level higher per ``aging`` seconds waited (urgent
      at most); equal levels go to the higher base priority, then the older job.
    """

    #: Names this node to the others sharing the broker; ``None`` for a broker of one process.
    node_id: str | None = None
    #: True for a broker whose :meth:`complete`, :meth:`fail` and :meth:`finish_cancelled` never
    #: checkpoint (nothing to wait for: the memory broker). Such a recording cannot be
    #: interrupted, so the worker does not shield it (a shield costs ~3% of a no-op job).
    records_without_checkpoint: bool = False
    #: True for a broker whose :meth:`enqueue` always waits for an answer (a round trip to a
    #: server): a full checkpoint, so the processor adds no schedule point of its own after
    #: it (one more pass of the scheduler per submission, ~10% of a submission into Redis).
    enqueue_waits: bool = False
    #: The dispatch rules in force (see :meth:`set_dispatch`).
    dispatch: DispatchRules = NO_RULES

    def set_dispatch(self, rules: DispatchRules) -> None:
        """Take the per-type limits and priority aging to apply (the processor calls it once,
        before :meth:`run`). A broker that cannot apply them overrides it to refuse."""
        self.dispatch = rules

    async def limit_figures(self) -> dict[str, LimitFigures]:
        """Each limited type's limits, running and held jobs (cluster-wide on a shared broker);
        the default: none.

        Raises:
            BrokerUnavailable: a shared broker cannot be reached.
        """
        await trio.lowlevel.checkpoint()
        return {}

    @abc.abstractmethod
    async def run(
        self,
        host: BrokerHost,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run background tasks until cancelled; call ``task_status.started()`` once ready.

        ``host.clock`` gives the time every timestamp uses. No other method is called before
        this one has started.
        """

    @abc.abstractmethod
    async def enqueue(self, jobs: Sequence[Job]) -> list[Admission]:
        """Admit ``jobs`` atomically (all or none).

        Jobs with ``run_at`` in the future become ``scheduled``, the others ``pending``.

        Raises:
            QueueFull: admitting the new ones would pass the admission bound.
        """

    @abc.abstractmethod
    async def fetch(self, worker_id: str) -> Delivery:
        """Wait for the next job and return it marked ``running`` on ``worker_id``."""

    @abc.abstractmethod
    async def complete(self, delivery: Delivery, result: Any) -> Recording:
        """Record success with ``result``."""

    @abc.abstractmethod
    async def fail(self, delivery: Delivery, error: JobError, retry_at: float | None) -> Recording:
        """Record a failed attempt: ``scheduled`` for ``retry_at`` if given, else ``failed``."""

    @abc.abstractmethod
    async def finish_cancelled(self, delivery: Delivery) -> Recording:
        """Record that a running job was cancelled on request."""

    @abc.abstractmethod
    async def release(self, delivery: Delivery) -> None:
        """Give an unfinished job back (shutdown): it is queued again as ``pending``."""

    @abc.abstractmethod
    async def set_progress(self, delivery_job: Job, value: Any) -> None:
        """Record a running job's progress."""

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> CancelOutcome:
        """Cancel a job: a pending or scheduled one ends ``cancelled`` at once.

        Raises:
            JobNotFound: no such job.
            JobAlreadyFinished: the job is in a final state.
        """

    @abc.abstractmethod
    async def retry(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again under its id, as
        :func:`~trio_tasks._job.requeued` makes it: ``pending``, fresh attempts, its last error
        appended to ``errors``; held to the admission bound like a submission. Returns the
        record as queued.

        Raises:
            JobNotFound: no such job.
            JobNotRetryable: the job is not failed or cancelled (or another caller queued it
                again first).
            QueueFull: the admission bound is reached.
        """

    @abc.abstractmethod
    async def get(self, job_id: str) -> Job | None:
        """Return a snapshot of the job, or ``None``."""

    @abc.abstractmethod
    async def list_jobs(
        self, *, status: JobStatus | None, job_type: str | None, limit: int
    ) -> list[Job]:
        """Return up to ``limit`` job snapshots matching the filters, newest first."""

    @abc.abstractmethod
    async def wait(self, job_id: str) -> Job:
        """Wait until the job is final and return its snapshot.

        Raises:
            JobNotFound: no such job.
        """

    @abc.abstractmethod
    async def counts(self) -> QueueCounts:
        """Return how many jobs wait, per priority, and how many are scheduled."""

    @abc.abstractmethod
    def unfinished_ids(self) -> list[str]:
        """Ids of jobs this broker holds that are not final and not running (for shutdown)."""

    async def cluster(self) -> ClusterView | None:
        """The cluster-wide view of a shared broker; ``None`` (the default) for a broker that
        serves one process only.

        Raises:
            BrokerUnavailable: the shared broker cannot be reached.
        """
        await trio.lowlevel.checkpoint()
        return None

    def health(self) -> str | None:
        """``None`` while the broker works; otherwise why not (e.g. "redis unreachable: …").

        ``GET /health`` answers 503 ``unhealthy`` with this reason.
        """
        return None

    async def aclose(self) -> None:
        """Release connections. The default does nothing but checkpoint."""
        await trio.lowlevel.checkpoint()

    # -- periodic jobs (shared by every node; see trio_tasks._schedule_loop) ---------------

    @abc.abstractmethod
    async def schedule_state(self, name: str) -> ScheduleState:
        """What the broker keeps of schedule ``name`` (the defaults when nothing yet).

        Raises:
            BrokerUnavailable: a shared broker cannot be reached.
        """

    @abc.abstractmethod
    async def set_schedule_paused(self, name: str, paused: bool) -> None:
        """Pause or resume schedule ``name`` for every node sharing the broker.

        Raises:
            BrokerUnavailable: a shared broker cannot be reached.
        """

    @abc.abstractmethod
    async def record_tick(self, name: str, tick: float, job_id: str | None) -> None:
        """Note that ``tick`` of schedule ``name`` was dealt with: its job ``job_id`` was
        submitted, or (``None``) it was skipped while paused. An older tick than the one kept
        changes nothing.

        Raises:
            BrokerUnavailable: a shared broker cannot be reached.
        """
