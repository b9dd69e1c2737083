"""The processor: worker tasks, timeouts, retries, cancellation and graceful shutdown."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import structlog
import trio

from ._backoff import backoff_delay
from ._clock import WallClock
from ._config import Config
from ._context import JobContext
from ._durations import format_duration, parse_duration
from ._errors import (
    InvalidValue,
    JobNotFound,
    PermanentError,
    Retry,
    ShuttingDown,
    TrioTasksError,
    UnknownJobType,
)
from ._job import Job, JobError, JobStatus, Priority
from ._registry import TaskRegistry
from ._request import JobRequest, new_job_id
from ._stats import LatencyWindow, ProcessorStats, WorkerState, WorkerStats
from .brokers._base import Admission, Broker, Delivery
from .brokers._memory import MemoryBroker

#: Called with an event name (``submitted``, ``started``, ``completed``, ``failed``, ``retried``,
#: ``cancelled``) and the job, synchronously, from the task where the event happened.
Listener = Callable[[str, Job], None]

_DURATION_FIELDS = frozenset(
    {"job_timeout", "retry_delay", "retry_max_delay", "shutdown_timeout", "result_ttl"}
)
# Results of these types need no check; floats do (NaN and infinities are not JSON).
_SIMPLE_RESULTS = (type(None), str, int, bool)


class Processor:
    """Runs jobs from a broker on a pool of worker tasks.

    Create it with :func:`open_processor` (or construct it and ``await nursery.start(p.run)``).
    All methods must be called from Trio code in the same process.

    Resource handling: :meth:`run` owns a nursery with the broker's background tasks and one
    task per worker; it returns once :meth:`shutdown` has drained the workers.

    Error handling: a handler's exception, timeout or unserialisable result is a failed attempt,
    never a crash of the worker. Bugs in trio-tasks itself propagate out of :meth:`run`.
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
        self.broker: Broker = broker or make_broker(config.broker_url, config)
        self._set_progress = self.broker.set_progress
        self._log: Any = logger if logger is not None else structlog.get_logger("trio_tasks")
        self._rng = rng or random.Random()
        self._clock: WallClock | None = None
        self._started_at = 0.0
        self._closing = False
        self._stopping = False
        self._stop_requested = trio.Event()
        self._stopped = trio.Event()
        self._worker_scope: trio.CancelScope | None = None
        self._grace_deadline = float("inf")
        self._workers = [WorkerState(f"worker-{i + 1}") for i in range(config.workers)]
        self._scopes: dict[str, trio.CancelScope] = {}
        self._cancelling: set[str] = set()
        self._listeners: list[Listener] = []
        self._submitted = 0
        self._completed = 0
        self._failed = 0
        self._retried = 0
        self._cancelled = 0
        self._queue_wait = LatencyWindow()
        self._run_time = LatencyWindow()
        self._info = _enabled(self._log, logging.INFO)
        self._debug = _enabled(self._log, logging.DEBUG)
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
        if self._clock is not None:
            raise RuntimeError("Processor.run() can only be called once")
        self._clock = WallClock()
        self._started_at = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    partial(self.broker.run, clock=self._clock, on_cancel=self._on_cancel)
                )
                async with trio.open_nursery() as workers:
                    self._worker_scope = workers.cancel_scope
                    workers.cancel_scope.deadline = self._grace_deadline
                    for state in self._workers:
                        workers.start_soon(self._worker, state, name=f"trio_tasks {state.id}")
                    task_status.started()
                    await self._stop_requested.wait()
                    # Idle workers stop now; busy ones finish their job within the grace period.
                    for state in self._workers:
                        if state.scope is not None and state.current_job is None:
                            state.scope.cancel()
                nursery.cancel_scope.cancel()
        finally:
            # Also when run() itself is cancelled (the caller's block raised, a second signal):
            # interrupted jobs were released, so report them, close the broker, refuse new jobs.
            self._closing = self._stopping = True
            self.abandoned = self.broker.unfinished_ids()
            if self.abandoned:
                self._log.warning(
                    "unfinished jobs abandoned at shutdown",
                    count=len(self.abandoned),
                    job_ids=self.abandoned,
                )
            with trio.CancelScope(shield=True):
                await self.broker.aclose()
            if self._info:
                self._log.info("processor stopped", abandoned=len(self.abandoned))
            self._stopped.set()

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
        self._stopping = True
        deadline = trio.current_time() + grace
        self._grace_deadline = min(self._grace_deadline, deadline)
        if self._worker_scope is not None:
            self._worker_scope.deadline = self._grace_deadline
        self._stop_requested.set()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event, job)`` on every job event (see :data:`Listener`)."""
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
        clock = self._require_clock()
        now = clock.now()
        jobs = [self._new_job(request, now) for request in requests]
        admissions = await self.broker.enqueue(jobs)
        for admission in admissions:
            if admission.created:
                self._submitted += 1
                if self._debug:
                    job = admission.job
                    self._log.debug(
                        "job submitted",
                        job_id=job.id,
                        job_type=job.type,
                        priority=str(job.priority),
                    )
                if self._listeners:
                    self._emit("submitted", admission.job)
        # The other half of the checkpoint every Trio call makes (the broker made the first): a
        # loop of submissions lets the workers run. Shielded: the jobs are admitted already.
        await trio.lowlevel.cancel_shielded_checkpoint()
        return admissions

    def _new_job(self, request: JobRequest, now: float) -> Job:
        spec = self.registry.get(request.type)
        retries = _first(request.retries, spec.retries, self.config.retry_attempts)
        run_at = request.run_at
        if request.delay is not None:
            run_at = now + request.delay
        return Job(
            id=request.job_id or new_job_id(),
            type=request.type,
            priority=request.priority,
            payload=request.payload,
            max_attempts=retries + 1,
            timeout=_first(request.timeout, spec.timeout, self.config.job_timeout),
            created_at=now,
            run_at=run_at,
        )

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
            self._cancelled += 1
            if self._info:
                self._log.info("job cancelled", job_id=job_id, job_type=outcome.job.type)
            if self._listeners:
                self._emit("cancelled", outcome.job)
        return outcome.job

    async def stats(self) -> ProcessorStats:
        """Return a snapshot of the counters and queue figures."""
        counts = await self.broker.counts()
        return ProcessorStats(
            submitted=self._submitted,
            completed=self._completed,
            failed=self._failed,
            retried=self._retried,
            cancelled=self._cancelled,
            running=counts.running,
            queued=counts.pending,
            scheduled=counts.scheduled,
            workers=self.workers(),
            queue_wait=self._queue_wait.percentiles(),
            run_time=self._run_time.percentiles(),
            uptime=trio.current_time() - self._started_at if self._clock else 0.0,
        )

    def workers(self) -> tuple[WorkerStats, ...]:
        """A snapshot of each worker of this processor."""
        return tuple(state.snapshot() for state in self._workers)

    # -- workers ---------------------------------------------------------------------------

    def _on_cancel(self, job_id: str) -> None:
        scope = self._scopes.get(job_id)
        if scope is not None:
            self._cancelling.add(job_id)
            scope.cancel()

    async def _worker(self, state: WorkerState) -> None:
        broker = self.broker
        try:
            with trio.CancelScope() as state.scope:
                while not self._stopping:
                    delivery = await broker.fetch(state.id)
                    state.state = "busy"
                    state.current_job = delivery.job.id
                    try:
                        await self._execute(state, delivery)
                    finally:
                        state.state = "idle"
                        state.current_job = None
        finally:
            # Also when the grace period ended in the middle of a job.
            state.state = "stopped"

    async def _execute(self, state: WorkerState, delivery: Delivery) -> None:
        job = delivery.job
        job_id = job.id
        spec = self.registry._specs.get(job.type)
        trio_now = self._clock.trio_now  # type: ignore[union-attr]  # set by run()
        started = trio_now()
        scope = trio.CancelScope(deadline=started + job.timeout)
        self._scopes[job_id] = scope
        assert job.started_at is not None
        # Runnable since its run_at (a delay or a retry), or since submission if that was later.
        self._queue_wait.add(max(0.0, job.started_at - max(job.run_at or 0.0, job.created_at)))
        if self._info:
            self._log.info(
                "job started",
                job_id=job_id,
                job_type=job.type,
                worker_id=state.id,
                priority=str(job.priority),
                attempt=job.attempts,
            )
        if self._listeners:
            self._emit("started", job)
        error: BaseException | None = None
        result: Any = None
        try:
            with scope:
                if spec is None:
                    # Possible with a shared broker when another node submitted a type unknown
                    # here: nothing this node can do will make the job succeed.
                    raise PermanentError(str(UnknownJobType(job.type, self.registry.names())))
                ctx = JobContext(job, state.id, self._log, self._set_progress)
                if spec.is_async:
                    result = await spec.handler(ctx)
                else:
                    # A thread cannot be cancelled: on timeout it is abandoned and runs on alone.
                    result = await trio.to_thread.run_sync(
                        spec.handler, ctx, abandon_on_cancel=True
                    )
                if type(result) not in _SIMPLE_RESULTS:
                    _check_json(result)
        except BaseException as exc:
            if _is_cancellation(exc) or not isinstance(exc, Exception):
                # The worker nursery itself is being cancelled (grace period over): hand the job
                # back before unwinding, so it is not lost half-run.
                with trio.CancelScope(shield=True):
                    await self.broker.release(delivery)
                self._scopes.pop(job_id, None)
                self._cancelling.discard(job_id)
                self._log.warning("job interrupted by shutdown", job_id=job_id, job_type=job.type)
                raise
            error = _single_leaf(exc)
        del self._scopes[job_id]
        elapsed = trio_now() - started
        self._run_time.add(elapsed)
        state.processed += 1
        if self.broker.shield_outcomes:
            # Recording talks to the broker: a shutdown arriving now must not lose the outcome.
            with trio.CancelScope(shield=True):
                await self._record(state, delivery, scope, error, result, elapsed)
        else:
            await self._record(state, delivery, scope, error, result, elapsed)

    async def _record(
        self,
        state: WorkerState,
        delivery: Delivery,
        scope: trio.CancelScope,
        error: BaseException | None,
        result: Any,
        elapsed: float,
    ) -> None:
        job = delivery.job
        if job.id in self._cancelling:
            self._cancelling.discard(job.id)
            state.failed += 1
            await self._record_cancelled(delivery, elapsed)
        elif scope.cancelled_caught:
            state.failed += 1
            message = f"timed out after {format_duration(job.timeout)}"
            await self._record_failure(delivery, JobError(message, "TimeoutError"), None)
        elif error is not None:
            state.failed += 1
            await self._record_failure(
                delivery,
                JobError(str(error) or type(error).__name__, type(error).__name__),
                error,
            )
        else:
            state.succeeded += 1
            await self._record_success(delivery, result, elapsed)

    async def _record_success(self, delivery: Delivery, result: Any, elapsed: float) -> None:
        job = await self.broker.complete(delivery, result)
        self._completed += 1
        self._announce_final("completed", job, elapsed)

    async def _record_cancelled(self, delivery: Delivery, elapsed: float) -> None:
        job = await self.broker.finish_cancelled(delivery)
        self._cancelled += 1
        self._announce_final("cancelled", job, elapsed)

    def _announce_final(self, event: str, job: Job, elapsed: float) -> None:
        if self._info:
            self._log.info(
                f"job {event}",
                job_id=job.id,
                job_type=job.type,
                worker_id=job.worker_id,
                attempt=job.attempts,
                duration=format_duration(elapsed),
            )
        if self._listeners:
            self._emit(event, job)

    async def _record_failure(
        self, delivery: Delivery, error: JobError, exc: BaseException | None
    ) -> None:
        job = delivery.job
        retry_at: float | None = None
        if job.attempts < job.max_attempts and not isinstance(exc, PermanentError):
            if isinstance(exc, Retry) and exc.delay is not None:
                delay = exc.delay
            else:
                cfg = self.config
                delay = backoff_delay(job.attempts, cfg.retry_delay, cfg.retry_max_delay, self._rng)
            retry_at = self._require_clock().now() + delay
        job = await self.broker.fail(delivery, error, retry_at)
        fields = {
            "job_id": job.id,
            "job_type": job.type,
            "worker_id": job.worker_id,
            "attempt": job.attempts,
            "error": error.message,
        }
        if retry_at is not None:
            self._retried += 1
            self._log.info("job retrying", retry_in=format_duration(delay), **fields)
            event = "retried"
        else:
            self._failed += 1
            self._log.error("job failed", error_type=error.type, **fields)
            event = "failed"
        if self._listeners:
            self._emit(event, job)

    def _emit(self, event: str, job: Job) -> None:
        for listener in self._listeners:
            try:
                listener(event, job)
            except Exception:
                # A listener (metrics, say) must not take the workers down with it, nor turn an
                # admitted submission into an error for its caller.
                self._log.exception("job listener failed", listener=repr(listener), event=event)

    def _require_clock(self) -> WallClock:
        if self._clock is None:
            raise RuntimeError("the processor is not running: use open_processor() or run()")
        return self._clock


def _check_json(result: Any) -> None:
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"result is not JSON-serialisable: {exc}") from None


def _single_leaf(exc: BaseException) -> BaseException:
    """The one exception inside nested groups of one (a handler's nursery raising it), so that a
    ``PermanentError`` or ``Retry`` raised by a child task means what it says."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(trio.Cancelled) is not None
    return False


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


def _enabled(logger: Any, level: int) -> bool:
    check = getattr(logger, "is_enabled_for", None)
    if check is None:
        # structlog's lazy proxy: resolve it to see whether the configured wrapper filters.
        bind = getattr(logger, "bind", None)
        check = getattr(bind(), "is_enabled_for", None) if bind else None
    return bool(check(level)) if check is not None else True


def make_broker(url: str, config: Config) -> Broker:
    """Return the broker for ``url``: ``memory://`` (this process only), or ``redis://``,
    ``rediss://``, ``unix://`` (shared by every node pointing at the same Redis).

    Raises:
        InvalidValue: an unsupported URL scheme or a malformed Redis URL option.
    """
    if url.startswith("memory://"):
        return MemoryBroker(
            max_concurrency=config.max_concurrency,
            result_ttl=config.result_ttl,
            result_max_jobs=config.result_max_jobs,
        )
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .brokers._redis import RedisBroker  # imports coredis only when Redis is used

        try:
            return RedisBroker(
                url,
                max_concurrency=config.max_concurrency,
                result_ttl=config.result_ttl,
                result_max_jobs=config.result_max_jobs,
            )
        except InvalidValue:
            raise
        except ValueError as exc:
            # Raised by URL parsing below us (a port that is not a number, say).
            raise InvalidValue(f"malformed broker URL: {exc}") from None
    raise InvalidValue(
        f"broker URL {url!r} is not supported; use memory:// or redis://host:port/db"
    )


def build_config(config: Config | None = None, **settings: Any) -> Config:
    """Return ``config`` (default: all defaults) with ``settings`` applied by field name.

    Duration settings accept Go durations or seconds.

    Raises:
        InvalidValue: an unknown setting or a bad value.
    """
    base = config or Config()
    fields = attrs.fields_dict(Config)
    values: dict[str, Any] = {}
    for name, value in settings.items():
        if name not in fields:
            raise InvalidValue(f"unknown setting {name!r}; expected one of {', '.join(fields)}")
        if name in _DURATION_FIELDS and value is not None:
            value = parse_duration(value, name=name)
        values[name] = value
    try:
        return attrs.evolve(base, **values)
    except TrioTasksError as exc:
        raise InvalidValue(str(exc)) from None


@asynccontextmanager
async def open_processor(
    registry: TaskRegistry,
    *,
    config: Config | None = None,
    broker: Broker | str | None = None,
    logger: Any = None,
    rng: random.Random | None = None,
    **settings: Any,
) -> AsyncIterator[Processor]:
    """Run a :class:`Processor` for the duration of an ``async with`` block.

    ``settings`` are :class:`Config` fields (``workers``, ``max_concurrency``, ``job_timeout``,
    ``retry_attempts``, ``retry_delay``, ``retry_max_delay``, ``shutdown_timeout``,
    ``result_ttl``, ``result_max_jobs``…); durations accept Go syntax. ``broker`` is a
    :class:`Broker` or a URL.

    Leaving the block normally drains gracefully (see :meth:`Processor.shutdown`): jobs still
    queued are abandoned and listed in ``processor.abandoned``. Leaving it with an exception
    cancels the workers at once.
    """
    if isinstance(broker, str):
        settings["broker_url"] = broker
        broker = None
    cfg = build_config(config, **settings)
    processor = Processor(registry, cfg, broker=broker, logger=logger, rng=rng)
    async with trio.open_nursery() as nursery:
        await nursery.start(processor.run)
        try:
            yield processor
        except BaseException:
            processor.shutdown(grace=0)
            raise
        processor.shutdown()
