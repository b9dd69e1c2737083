"""The in-process broker: one queue (a deque) per priority, a semaphore counting entries."""

from __future__ import annotations

import contextlib
import heapq
import itertools
from collections import deque
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from .._clock import WallClock
from .._errors import JobAlreadyFinished, JobNotFound, JobNotRetryable, QueueFull, ShuttingDown
from .._job import (
    PRIORITIES_HIGH_FIRST,
    RETRYABLE,
    Job,
    JobError,
    JobStatus,
    Priority,
    requeued,
    snapshot,
)
from .._limits import DispatchRules, LimitFigures, LocalGate, effective_priority, runnable_since
from .._schedules import ScheduleState
from ._base import (
    Admission,
    Broker,
    BrokerHost,
    CancelOutcome,
    Delivery,
    QueueCounts,
    Recording,
    RecordStatus,
)
from ._retention import FinishedJobs

_PENDING = JobStatus.PENDING
_SCHEDULED = JobStatus.SCHEDULED
_RUNNING = JobStatus.RUNNING
_RECORDED = RecordStatus.RECORDED


class MemoryBroker(Broker):
    """Queues and records in this process; nothing survives a restart.

    Each priority has a FIFO queue; a semaphore counts the queued entries so a worker sleeps
    on one primitive and then takes the highest non-empty queue (or, with priority aging, the
    queue whose first job has the highest effective priority). Cancelled pending jobs stay in
    their queue as tombstones, skipped by ``fetch`` and compacted away if they outnumber the
    live entries. Delayed jobs and waiting retries sit in a heap; one scheduler task sleeps
    until the earliest is due (or until a rate limit lets a held job start).

    Per-type limits (:meth:`set_dispatch`) are kept by a :class:`~trio_tasks._limits.LocalGate`
    in this process: a fetched job over its type's limit is held there (pending, holding no
    worker) and the worker takes the next job; it goes back to the front of its queue when a
    job of its type ends or its rate window opens.

    Finished jobs stay queryable for ``result_ttl`` seconds (failed ones for ``failed_ttl``,
    if longer), at most ``result_max_jobs`` of them and ``result_max_bytes`` of payloads,
    results and errors (their JSON size), oldest evicted first, failed ones last.
    """

    # complete/fail/finish_cancelled only change records in memory (see below).
    records_without_checkpoint = True

    def __init__(
        self,
        *,
        max_concurrency: int,
        result_ttl: float,
        result_max_jobs: int,
        result_max_bytes: int = 256 * 1_048_576,
        failed_ttl: float = 0.0,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.result_ttl = result_ttl
        self.failed_ttl = max(result_ttl, failed_ttl)
        self.result_max_jobs = result_max_jobs
        self.result_max_bytes = result_max_bytes
        self._clock: WallClock | None = None
        self._host: BrokerHost | None = None
        self._jobs: dict[str, Job] = {}
        self._kept = FinishedJobs(
            self._jobs,
            result_ttl=result_ttl,
            failed_ttl=self.failed_ttl,
            max_jobs=result_max_jobs,
            max_bytes=result_max_bytes,
        )
        self._queues: dict[Priority, deque[Job]] = {p: deque() for p in Priority}
        self._lanes = [(p, self._queues[p]) for p in PRIORITIES_HIGH_FIRST]
        #: Per-type limits (``None``: no type has any, and fetch pays nothing for them).
        self._gate: LocalGate | None = None
        self._aging = 0.0
        self._available = trio.Semaphore(0)
        self._pending = dict.fromkeys(Priority, 0)
        self._tombstones = dict.fromkeys(Priority, 0)
        self._running = 0
        self._unfinished = 0
        self._heap: list[tuple[float, int, Job]] = []
        self._heap_seq = itertools.count()
        self._scheduled = 0
        self._wake: trio.CancelScope | None = None
        self._waiters: dict[str, trio.Event] = {}
        self._closed = False
        #: Periodic jobs' shared state by schedule name (see :meth:`schedule_state`).
        self._schedules: dict[str, ScheduleState] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def run(
        self,
        host: BrokerHost,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Promote due scheduled jobs until cancelled."""
        self._clock = clock = host.clock
        self._host = host
        task_status.started()
        while True:
            deadline = clock.to_trio(self._heap[0][0]) if self._heap else float("inf")
            gate = self._gate
            if gate is not None and (due := gate.next_due()) is not None:
                deadline = min(deadline, clock.to_trio(due))
            with trio.CancelScope(deadline=deadline) as self._wake:
                await trio.sleep_forever()
            self._promote_due()
            if gate is not None:
                self._requeue_held(gate.due(clock.now()))

    def _now(self) -> float:
        assert self._clock is not None, "MemoryBroker.run() has not started"
        return self._clock.now()

    def set_dispatch(self, rules: DispatchRules) -> None:
        """Apply per-type limits (in this process) and priority aging."""
        self.dispatch = rules
        self._gate = LocalGate(rules.limits) if rules.limits else None
        self._aging = rules.aging

    async def limit_figures(self) -> dict[str, LimitFigures]:
        """Each limited type's limits, running and held jobs in this process."""
        await trio.lowlevel.checkpoint()
        return {} if self._gate is None else self._gate.figures()

    # -- submission ------------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[Admission]:
        """Admit all of ``jobs`` or none; see :meth:`Broker.enqueue`."""
        # Half of a checkpoint: a cancelled caller submits nothing. The processor schedules
        # after it has announced the jobs, so no listener hears "started" before "submitted".
        await trio.lowlevel.checkpoint_if_cancelled()
        answers, new = self._admit(jobs)
        self._place(new)
        # Snapshots once placed, so a delayed job is answered ``scheduled``, not ``pending``.
        return [Admission(snapshot(job), created) for job, created in answers]

    def _admit(self, jobs: Sequence[Job]) -> tuple[list[tuple[Job, bool]], list[Job]]:
        """Tell new jobs from existing ids (``(job, created)`` per job, and the new ones), count
        the new ones as unfinished and mark each ``pending`` or ``scheduled``; place nothing yet.

        Raises:
            QueueFull: the new ones would pass the admission bound.
        """
        answers: list[tuple[Job, bool]] = []
        new: list[Job] = []
        batch_ids: dict[str, Job] = {}
        for job in jobs:
            existing = self._known(job.id) or batch_ids.get(job.id)
            if existing is not None:
                answers.append((existing, False))
            else:
                batch_ids[job.id] = job
                new.append(job)
                answers.append((job, True))
        if self._unfinished + len(new) > self.max_concurrency:
            raise QueueFull(self.max_concurrency)
        now = self._now()
        for job in new:
            job.status = _SCHEDULED if job.run_at is not None and job.run_at > now else _PENDING
        self._unfinished += len(new)
        return answers, new

    def _known(self, job_id: str) -> Job | None:
        """The live job with this id, for :meth:`_admit` (the SQLite broker adds the jobs whose
        submission it is committing)."""
        return self._live(job_id)

    def _place(self, jobs: Sequence[Job]) -> None:
        """Queue or schedule admitted jobs, as their status says, and keep their records."""
        for job in jobs:
            self._jobs[job.id] = job
            if job.status is _SCHEDULED:
                assert job.run_at is not None
                self._schedule(job, job.run_at)
            else:
                self._push(job)

    def _push(self, job: Job) -> None:
        job.status = _PENDING
        priority = job.priority
        self._queues[priority].append(job)
        self._pending[priority] += 1
        self._available.release()

    def _push_front(self, job: Job) -> None:
        """Queue ``job`` (running until now) first of its priority: a job handed back."""
        job.status = _PENDING
        priority = job.priority
        self._queues[priority].appendleft(job)
        self._pending[priority] += 1
        self._available.release()

    def _requeue_held(self, jobs: list[Job]) -> None:
        """Put held jobs (still pending and counted so) back first in their queues, the first
        of ``jobs`` first."""
        for job in reversed(jobs):
            self._queues[job.priority].appendleft(job)
            self._available.release()

    def _compact(self, priority: Priority) -> None:
        """Drop the tombstones (cancelled pending jobs) of one queue."""
        queue = self._queues[priority]
        kept = [job for job in queue if job.status is _PENDING]
        for _ in range(len(queue) - len(kept)):
            # If its token is already handed to a waking worker, that worker finds nothing
            # for it and waits again (see fetch).
            with contextlib.suppress(trio.WouldBlock):
                self._available.acquire_nowait()
        queue.clear()
        queue.extend(kept)
        self._tombstones[priority] = 0

    def _schedule(self, job: Job, run_at: float) -> None:
        job.status = _SCHEDULED
        job.run_at = run_at
        heapq.heappush(self._heap, (run_at, next(self._heap_seq), job))
        self._scheduled += 1
        wake = self._wake
        if wake is not None:
            assert self._clock is not None
            wake.deadline = min(wake.deadline, self._clock.to_trio(run_at))

    def _promote_due(self) -> None:
        assert self._clock is not None
        # Compare in Trio time, as the wake-up deadline was set, so a due job is never missed by
        # a rounding error between the two clocks.
        now = trio.current_time()
        to_trio = self._clock.to_trio
        heap = self._heap
        while heap and to_trio(heap[0][0]) <= now:
            run_at, _, job = heapq.heappop(heap)
            if job.status is _SCHEDULED and job.run_at == run_at:
                self._scheduled -= 1
                self._push(job)
        # Cancelled scheduled jobs stay in the heap until due; rebuild if they dominate it.
        if len(heap) > 64 and len(heap) > 2 * self._scheduled:
            self._heap = [e for e in heap if e[2].status is _SCHEDULED and e[2].run_at == e[0]]
            heapq.heapify(self._heap)

    # -- workers ---------------------------------------------------------------------------

    async def fetch(self, worker_id: str) -> Delivery:
        """Wait for a job; take the oldest of the highest non-empty priority (by effective
        priority with aging); hold it instead if its type is at a limit, and take the next."""
        while True:
            await self._available.acquire()
            if self._aging:
                queue = self._aged_lane()
            else:
                for _, queue in self._lanes:
                    if queue:
                        break
            if not queue:
                # The token of a tombstone that _compact removed after handing the token out.
                continue
            job = queue.popleft()
            if job.status is not _PENDING:
                self._tombstones[job.priority] -= 1
                continue
            now = self._clock.now()  # type: ignore[union-attr]  # set by run()
            gate = self._gate
            if gate is not None and not gate.admit(job, now):
                self._wake_for_rate(gate)
                continue
            self._pending[job.priority] -= 1
            self._running += 1
            job.status = _RUNNING
            job.attempts += 1
            job.started_at = now
            job.worker_id = worker_id
            return Delivery(job)

    def _aged_lane(self) -> deque[Job]:
        """The queue whose first job goes next under priority aging: the highest effective
        priority, then the higher base priority, then the job waiting longer."""
        now = self._now()
        aging = self._aging
        best: deque[Job] = self._lanes[-1][1]
        best_key: tuple[int, int, float] | None = None
        for priority, queue in self._lanes:
            if not queue:
                continue
            since = runnable_since(queue[0])
            key = (effective_priority(priority, now - since, aging), priority, -since)
            if best_key is None or key > best_key:
                best, best_key = queue, key
        return best

    def _wake_for_rate(self, gate: LocalGate) -> None:
        """A job was held: make the scheduler look again when a rate lets one start."""
        due = gate.next_due()
        wake = self._wake
        if due is not None and wake is not None:
            assert self._clock is not None
            wake.deadline = min(wake.deadline, self._clock.to_trio(due))

    def _stop_running(self, job: Job) -> None:
        """A running job ended (any way): uncount it, and free its type's slot if limited."""
        self._running -= 1
        gate = self._gate
        if gate is not None and gate.is_limited(job.type):
            self._requeue_held(gate.finished(job, self._now()))

    # Recording an outcome never fails in memory, and needs no checkpoint: the worker that
    # records it reaches one when it fetches its next job.

    async def complete(self, delivery: Delivery, result: Any) -> Recording:
        """Record success."""
        job = delivery.job
        job.result = result
        self._stop_running(job)
        self._finish(job, JobStatus.COMPLETED)
        return Recording(_RECORDED, job)

    async def fail(self, delivery: Delivery, error: JobError, retry_at: float | None) -> Recording:
        """Record a failed attempt; schedule the retry or fail the job."""
        job = delivery.job
        job.error = error
        self._stop_running(job)
        if retry_at is None:
            self._finish(job, JobStatus.FAILED)
        else:
            self._schedule(job, retry_at)
        return Recording(_RECORDED, job)

    async def finish_cancelled(self, delivery: Delivery) -> Recording:
        """Record a cancelled running job."""
        self._stop_running(delivery.job)
        self._finish(delivery.job, JobStatus.CANCELLED)
        return Recording(_RECORDED, delivery.job)

    async def release(self, delivery: Delivery) -> None:
        """Queue an interrupted job again, first of its priority (it is then abandoned with the
        rest at shutdown)."""
        self._stop_running(delivery.job)
        self._push_front(delivery.job)

    async def set_progress(self, delivery_job: Job, value: Any) -> None:
        """Record progress on the live record."""
        delivery_job.progress = value
        await trio.lowlevel.checkpoint()

    def _finish(self, job: Job, status: JobStatus) -> None:
        now = self._now()
        job.status = status
        job.completed_at = now
        self._unfinished -= 1
        self._kept.add(job)
        waiter = self._waiters.pop(job.id, None)
        if waiter is not None:
            waiter.set()
        self._kept.evict(now)

    def _evict(self, now: float) -> None:
        self._kept.evict(now)

    def _restore_finished(self, job: Job) -> None:
        """Keep ``job``, final already (reloaded from the SQLite broker's file, in the order
        jobs finished), for lookups and retention, as if it had finished at ``completed_at``."""
        self._jobs[job.id] = job
        if job.completed_at is None:
            job.completed_at = 0.0
        self._kept.add(job)

    # -- lookups and cancellation ----------------------------------------------------------

    def _live(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None:
            return None
        done = job.completed_at
        ttl = self.failed_ttl if job.status is JobStatus.FAILED else self.result_ttl
        if done is not None and job.status.is_final and done <= self._now() - ttl:
            self._evict(self._now())
            return None
        return job

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Cancel a job; see :meth:`Broker.cancel`."""
        await trio.lowlevel.checkpoint()
        job = self._live(job_id)
        if job is None:
            raise JobNotFound(job_id)
        status = job.status
        if status is _RUNNING:
            assert self._host is not None
            self._host.on_cancel(job_id)
            return CancelOutcome(snapshot(job), running=True)
        if status is _PENDING:
            self._pending[job.priority] -= 1
            gate = self._gate
            if gate is None or not gate.discard(job):
                self._tombstones[job.priority] += 1
                if self._tombstones[job.priority] > 64 + self._pending[job.priority]:
                    self._compact(job.priority)
        elif status is _SCHEDULED:
            self._scheduled -= 1
        else:
            raise JobAlreadyFinished(job_id, status.value)
        self._finish(job, JobStatus.CANCELLED)
        return CancelOutcome(snapshot(job), running=False)

    async def retry(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again; see :meth:`Broker.retry`."""
        await trio.lowlevel.checkpoint()
        return snapshot(self._requeue(job_id))

    def _requeue(self, job_id: str) -> Job:
        """Queue the job again: a new record under its id (the old one may still sit in a queue
        or the heap as a tombstone, as a cancelled job does), in the same place in lists."""
        job = self._live(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job.status not in RETRYABLE:
            raise JobNotRetryable(job_id, job.status.value)
        if self._unfinished + 1 > self.max_concurrency:
            raise QueueFull(self.max_concurrency)
        fresh = self._jobs[job_id] = requeued(job)
        self._kept.discard(job_id)
        self._unfinished += 1
        self._push(fresh)
        return fresh

    async def get(self, job_id: str) -> Job | None:
        """A snapshot of the job, or ``None``."""
        await trio.lowlevel.checkpoint()
        job = self._live(job_id)
        return None if job is None else snapshot(job)

    async def list_jobs(
        self, *, status: JobStatus | None, job_type: str | None, limit: int
    ) -> list[Job]:
        """Newest first, filtered."""
        await trio.lowlevel.checkpoint()
        self._evict(self._now())
        found: list[Job] = []
        if limit <= 0:
            return found
        for job in reversed(self._jobs.values()):
            if (status is None or job.status is status) and (
                job_type is None or job.type == job_type
            ):
                found.append(snapshot(job))
                if len(found) >= limit:
                    break
        return found

    async def wait(self, job_id: str) -> Job:
        """Wait until the job is final."""
        job = self._live(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if not job.status.is_final and not self._closed:
            waiter = self._waiters.get(job_id)
            if waiter is None:
                waiter = self._waiters[job_id] = trio.Event()
            await waiter.wait()
        else:
            await trio.lowlevel.checkpoint()
        if not job.status.is_final:
            # The processor stopped with this job queued: it will never finish here.
            raise ShuttingDown(
                f"job {job_id!r} was abandoned {job.status.value}: the processor stopped"
            )
        return snapshot(job)

    async def aclose(self) -> None:
        """Wake every :meth:`wait` for a job that will now never finish."""
        self._closed = True
        for waiter in self._waiters.values():
            waiter.set()
        self._waiters.clear()
        await trio.lowlevel.checkpoint()

    async def counts(self) -> QueueCounts:
        """Exact queue figures."""
        await trio.lowlevel.checkpoint()
        return QueueCounts(dict(self._pending), self._scheduled, self._running)

    def unfinished_ids(self) -> list[str]:
        """Ids of pending and scheduled jobs."""
        return [
            job_id for job_id, job in self._jobs.items() if job.status in (_PENDING, _SCHEDULED)
        ]

    # -- periodic jobs ---------------------------------------------------------------------

    async def schedule_state(self, name: str) -> ScheduleState:
        """The state of schedule ``name`` in this process."""
        await trio.lowlevel.checkpoint()
        return self._schedules.get(name) or ScheduleState()

    async def set_schedule_paused(self, name: str, paused: bool) -> None:
        """Pause or resume schedule ``name``."""
        await trio.lowlevel.checkpoint()
        self._set_schedule(name, paused=paused)

    async def record_tick(self, name: str, tick: float, job_id: str | None) -> None:
        """Keep ``tick`` (and ``job_id``) as the latest of schedule ``name``."""
        await trio.lowlevel.checkpoint()
        state = self._schedules.get(name) or ScheduleState()
        if state.last_tick is None or tick >= state.last_tick:
            self._set_schedule(name, last_tick=tick, last_job_id=job_id or state.last_job_id)

    def _set_schedule(self, name: str, **changes: Any) -> ScheduleState:
        state = attrs.evolve(self._schedules.get(name) or ScheduleState(), **changes)
        self._schedules[name] = state
        return state
