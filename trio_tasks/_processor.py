"""The processor: its lifecycle, submissions and lookups, and the worker tasks.

Running one attempt lives in :mod:`._runner`; recording what it means (retry, fail, count, log,
tell listeners) lives in :mod:`._outcomes`; the broker is chosen in :mod:`.brokers`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import trio

from ._calling import HandlerCaller
from ._clock import WallClock
from ._config import Config
from ._dead_letter import RETRY_MAX, RETRY_SCAN, RetryBatch, parse_since, pick_failed
from ._errors import BrokerUnavailable, JobNotFound, JobNotRetryable, ShuttingDown
from ._events import EventHub
from ._isolation import open_process_runner
from ._job import Job, JobStatus, Priority
from ._limits import DispatchRules
from ._log import library_logger
from ._logging import log_enabled
from ._outcomes import OutcomeRecorder
from ._registry import TaskRegistry
from ._request import JobRequest
from ._schedule_loop import run_processor_schedules
from ._stats import ProcessorStats, WorkerStats
from ._submission import new_job, run_submit_hooks
from ._threads import ThreadRunner
from ._watchdog import LoopWatchdog
from ._worker_pool import WorkerPool
from .brokers import make_broker
from .brokers._base import Admission, Broker

#: Called with an event name (``submitted``, ``started``, ``completed``, ``failed``, ``retried``,
#: ``cancelled``, ``requeued``, ``released``: a job handed back at shutdown; ``progress``: the
#: job's ``progress`` changed) and the job, synchronously, from the task where the event
#: happened.
Listener = Callable[[str, Job], None]


class Processor:
    """Runs jobs from a broker on a pool of worker tasks.

    Create it with :func:`open_processor` (or construct it and ``await nursery.start(p.run)``).
    All methods must be called from Trio code in the same process.

    Resource handling: :meth:`run` owns a nursery with the broker's background tasks and one
    task per worker; it returns once :meth:`shutdown` has drained the workers.

    Error handling: whatever a handler raises (any exception, ``KeyboardInterrupt`` and
    ``SystemExit`` included), a timeout or an unserialisable result is a failed attempt, never a
    crash of the worker. Bugs in trio-tasks itself propagate out of :meth:`run`.
    """

    def __init__(
        self,
        registry: TaskRegistry,
        config: Config | None = None,
        *,
        broker: Broker | None = None,
        logger: Any = None,
        rng: random.Random | None = None,
    ) -> None:
        self.registry = registry
        self.config = config = config or Config()
        self._log: Any = logger if logger is not None else library_logger()
        self.broker: Broker = broker or make_broker(config.broker_url, config, logger=self._log)
        #: The time every timestamp uses (set by :meth:`run`; the broker reads it too).
        self.clock: WallClock = None  # type: ignore[assignment]
        self._started_at = 0.0
        self._closing = False
        self._stop_requested = trio.Event()
        self._stopped = trio.Event()
        self._worker_scope: trio.CancelScope | None = None
        self._grace_deadline = float("inf")
        self._listeners: list[Listener] = []
        self._threads = ThreadRunner(config.thread_workers, self._log)
        self._caller = HandlerCaller(self._threads, registry.middlewares, self._log)
        self._outcomes = OutcomeRecorder(
            self.broker,
            config,
            self._log,
            self._listeners,
            rng or random.Random(),
            now=lambda: self.clock.now(),
        )
        self._counts = self._outcomes.counts
        self._pool = WorkerPool(
            config.workers,
            broker=self.broker,
            registry=registry,
            caller=self._caller,
            outcomes=self._outcomes,
            listeners=self._listeners,
            log=self._log,
        )
        self._workers = self._pool.states
        #: Live job events for the HTTP event streams (and, on Redis, the other nodes).
        self.events = EventHub(self._listeners, self._log)
        self._info = log_enabled(self._log, logging.INFO)
        self._debug = log_enabled(self._log, logging.DEBUG)
        #: Ids of jobs left unfinished when the processor stopped (filled in by :meth:`run`).
        self.abandoned: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """True once :meth:`shutdown` was called: submissions are refused from then on."""
        return self._closing

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the broker and the workers until :meth:`shutdown` has drained them.

        Calls ``task_status.started()`` once jobs can be submitted.
        """
        if self.clock is not None:
            raise RuntimeError("Processor.run() can only be called once")
        self.clock = self._pool.clock = WallClock()
        self._started_at = trio.current_time()
        threshold = self.config.loop_block_warning
        watchdog = LoopWatchdog(threshold, self._log) if threshold > 0 else None
        try:
            async with AsyncExitStack() as stack:
                if any(spec.isolate == "process" for spec in self.registry):
                    # Exited after the workers: their processes were killed by then if running.
                    self._caller.processes = await stack.enter_async_context(
                        open_process_runner(self.config.process_workers)
                    )
                await self._run_workers(watchdog, task_status)
        finally:
            # Also when run() itself is cancelled (the caller's block raised, a second signal):
            # interrupted jobs were released, so report them, close the broker, refuse new jobs.
            self._closing = self._pool.stopping = True
            self.events.close()  # every event stream ends: no job changes here any more
            self.abandoned = self.broker.unfinished_ids()
            if self.abandoned:
                # The count, and a few ids: a line must stay short with 300,000 of them.
                self._log.warning(
                    "unfinished jobs abandoned at shutdown",
                    count=len(self.abandoned),
                    first_ids=self.abandoned[:10],
                )
            with trio.CancelScope(shield=True):
                await self.broker.aclose()
            if self._info:
                self._log.info("processor stopped", abandoned=len(self.abandoned))
            self._stopped.set()

    async def _run_workers(
        self, watchdog: LoopWatchdog | None, task_status: trio.TaskStatus[None]
    ) -> None:
        async with trio.open_nursery() as nursery:
            if watchdog is not None:
                nursery.start_soon(watchdog.run)
            # Per-type limits and priority aging: the broker applies them (see set_dispatch).
            self.broker.set_dispatch(
                DispatchRules(
                    limits := self.registry.limits(),
                    self.config.priority_aging,
                    frozenset(self.registry.names()) - limits.keys(),
                )
            )
            await nursery.start(self.broker.run, self)
            # Periodic jobs: on every node that runs jobs; stopped as soon as a shutdown starts.
            ticking = trio.CancelScope()
            if self.registry.schedules and self._workers:
                nursery.start_soon(run_processor_schedules, self, ticking, self._log)
            async with trio.open_nursery() as workers:
                self._worker_scope = workers.cancel_scope
                workers.cancel_scope.deadline = self._grace_deadline
                for state in self._workers:
                    workers.start_soon(self._pool.work, state, name=f"trio_tasks {state.id}")
                task_status.started()
                await self._stop_requested.wait()
                ticking.cancel()
                # Idle workers stop now; busy ones finish their job within the grace period.
                for state in self._workers:
                    if state.scope is not None and state.current_job is None:
                        state.scope.cancel()
            nursery.cancel_scope.cancel()

    async def wait_stopped(self) -> None:
        """Wait until :meth:`run` has finished: workers drained, broker closed.

        ``trio_tasks.serve`` uses it to stop the HTTP API once the processor is done.
        """
        await self._stopped.wait()

    def shutdown(self, grace: float | None = None) -> None:
        """Stop gracefully: refuse submissions, let running jobs finish within ``grace`` seconds
        (default ``shutdown_timeout``), then cancel them. Calling it again with a shorter grace
        tightens the deadline; ``grace=0`` cancels running jobs at once. Returns immediately;
        :meth:`run` returns when the workers are done.
        """
        grace = self.config.shutdown_timeout if grace is None else grace
        self._closing = True
        self._pool.stopping = True
        deadline = trio.current_time() + grace
        self._grace_deadline = min(self._grace_deadline, deadline)
        if self._worker_scope is not None:
            self._worker_scope.deadline = self._grace_deadline
        self._stop_requested.set()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event, job)`` on every job event (see :data:`Listener`).

        Listeners hear only what the broker recorded: an outcome that could not be written (the
        broker unreachable, the lease lost to another node) is logged as a warning instead.
        """
        self._listeners.append(listener)

    # -- submission ------------------------------------------------------------------------

    async def submit(
        self,
        type: str,
        payload: dict[str, Any] | None = None,
        *,
        priority: Priority | str | int = Priority.NORMAL,
        timeout: str | float | None = None,
        retries: int | None = None,
        delay: str | float | None = None,
        run_at: str | float | None = None,
        job_id: str | None = None,
    ) -> Job:
        """Submit one job and return a snapshot of it (the existing job for a known ``job_id``).

        Raises:
            UnknownJobType: no handler for ``type``.
            InvalidValue: a malformed argument.
            QueueFull: the admission bound is reached.
            ShuttingDown: the processor is stopping.
        """
        request = JobRequest.build(type, payload, priority, timeout, retries, delay, run_at, job_id)
        (admission,) = await self.submit_many([request])
        return admission.job

    async def submit_many(self, requests: Sequence[JobRequest]) -> list[Admission]:
        """Submit several jobs, all or none; return one :class:`Admission` per request.

        Every request is validated before any is admitted. Raises like :meth:`submit`.
        """
        if self._closing:
            raise ShuttingDown()
        now = self._require_clock().now()
        registry, config = self.registry, self.config
        jobs = [new_job(registry, config, request, now) for request in requests]
        if registry.submit_hooks:
            for job in jobs:
                run_submit_hooks(registry, job, self._log)
        admissions = await self.broker.enqueue(jobs)
        counts = self._counts
        for admission in admissions:
            if admission.created:
                counts["submitted"] += 1
                if self._debug:
                    job = admission.job
                    self._log.debug(
                        "job submitted",
                        job_id=job.id,
                        job_type=job.type,
                        priority=str(job.priority),
                    )
                if self._listeners:
                    self._outcomes.emit("submitted", admission.job)
        if not self.broker.enqueue_waits:
            # The other half of the checkpoint every Trio call makes (the broker made the
            # first): a loop of submissions lets the workers run. Shielded: the jobs are
            # admitted already. A broker that waited for a server's answer has yielded.
            await trio.lowlevel.cancel_shielded_checkpoint()
        return admissions

    # -- lookups ---------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        """Return a snapshot of the job.

        Raises:
            JobNotFound: unknown id, or expired from retention.
        """
        job = await self.broker.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        type: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Return recent jobs, newest first, optionally filtered by status and type."""
        if isinstance(status, str):
            status = JobStatus.parse(status)
        return await self.broker.list_jobs(status=status, job_type=type, limit=limit)

    async def wait(self, job_id: str) -> Job:
        """Wait until the job reaches a final state and return it.

        Raises:
            JobNotFound: unknown id.
        """
        return await self.broker.wait(job_id)

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job. A pending or scheduled job ends ``cancelled`` at once and is returned
        so; a running job has its cancel scope cancelled and is returned still ``running`` (it
        ends ``cancelled`` as soon as its handler has unwound; :meth:`wait` for it).

        Raises:
            JobNotFound: unknown id.
            JobAlreadyFinished: the job is already final.
        """
        outcome = await self.broker.cancel(job_id)
        if not outcome.running:
            self._outcomes.announce("cancelled", outcome.job, None)
        return outcome.job

    # -- failed jobs (the dead-letter list) ------------------------------------------------

    async def retry(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again under its id, with fresh attempts; its last
        error is kept in ``errors``. Returns the job as queued (``pending``).

        Raises:
            JobNotFound: unknown id, or expired from retention (``FAILED_TTL``).
            JobNotRetryable: the job is not failed or cancelled.
            QueueFull: the admission bound is reached.
            ShuttingDown: the processor is stopping.
        """
        if self._closing:
            await trio.lowlevel.checkpoint()
            raise ShuttingDown()
        job = await self.broker.retry(job_id)
        self._outcomes.announce("requeued", job, None)
        return job

    async def retry_failed(
        self,
        *,
        type: str | None = None,
        since: str | float | None = None,
        limit: int = RETRY_MAX,
    ) -> RetryBatch:
        """Queue again the failed jobs of ``type`` (any if ``None``) that failed ``since`` (an
        RFC 3339 time, or a duration like ``"1h"`` ago), newest first, at most ``limit`` (and
        :data:`~trio_tasks._dead_letter.RETRY_MAX`) per call; ``more`` in the answer says
        that others matched: call again. Jobs queued again by someone else meanwhile are
        skipped.

        Raises:
            InvalidValue: a malformed ``since``.
            QueueFull: the admission bound was reached (jobs queued before it stay queued).
        """
        moment = parse_since(since, self._require_clock().now())
        limit = max(0, min(limit, RETRY_MAX))
        found = await self.broker.list_jobs(
            status=JobStatus.FAILED, job_type=type, limit=RETRY_SCAN
        )
        picked, more = pick_failed(found, moment, limit)
        queued: list[Job] = []
        for job in picked:
            try:
                queued.append(await self.retry(job.id))
            except (JobNotFound, JobNotRetryable):
                continue
        return RetryBatch(tuple(queued), more)

    async def stats(self) -> ProcessorStats:
        """Return a snapshot of the counters and queue figures."""
        counts = await self.broker.counts()
        try:
            cluster = await self.broker.cluster()
        except BrokerUnavailable:
            cluster = None
        try:
            limits = await self.broker.limit_figures()
        except BrokerUnavailable:
            limits = {}
        own = self._counts
        return ProcessorStats(
            submitted=own["submitted"],
            completed=own["completed"],
            failed=own["failed"],
            retried=own["retried"],
            cancelled=own["cancelled"],
            running=counts.running,
            queued=counts.pending,
            scheduled=counts.scheduled,
            workers=self.workers(),
            queue_wait=self._pool.queue_wait.percentiles(),
            run_time=self._pool.run_time.percentiles(),
            uptime=trio.current_time() - self._started_at if self.clock else 0.0,
            node_id=self.broker.node_id,
            cluster=cluster,
            threads_stuck=self._threads.stuck,
            limits=limits,
        )

    def workers(self) -> tuple[WorkerStats, ...]:
        """A snapshot of each worker of this processor."""
        return self._pool.snapshot()

    def counters(self) -> dict[str, int]:
        """This processor's own counters: ``submitted``, ``completed``, ``failed``, ``retried``,
        ``cancelled`` (what went through it and was recorded)."""
        return dict(self._counts)

    # -- workers ---------------------------------------------------------------------------

    def on_cancel(self, job_id: str) -> None:
        """Stop a running job of this node that was cancelled (called by the broker)."""
        self._pool.on_cancel(job_id)

    def _require_clock(self) -> WallClock:
        if self.clock is None:
            raise RuntimeError("the processor is not running: use open_processor() or run()")
        return self.clock
