"""The worker tasks of a processor: each fetches a job, runs one attempt in the job's cancel
scope (:mod:`._runner`) and records it (:mod:`._outcomes`), until the processor stops.

The processor owns their nursery and their lifecycle (idle workers are cancelled at shutdown,
busy ones get the grace period); this module owns what happens to one job on one worker.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ._calling import HandlerCaller
from ._clock import WallClock
from ._context import JobContext
from ._job import Job, queue_wait
from ._logging import log_enabled
from ._outcomes import OutcomeRecorder
from ._registry import TaskRegistry
from ._runner import cancelled, run_attempt
from ._stats import LatencyWindow, WorkerState, WorkerStats
from .brokers._base import Broker, Delivery


class WorkerPool:
    """``count`` workers' states and what they share: the running jobs' cancel scopes (by job
    id, so a cancellation stops the right one), and the queue-wait and run-time windows.

    ``clock`` is set by the processor when it runs; ``stopping`` set to true makes each worker
    stop once its current job is recorded.
    """

    def __init__(
        self,
        count: int,
        *,
        broker: Broker,
        registry: TaskRegistry,
        caller: HandlerCaller,
        outcomes: OutcomeRecorder,
        listeners: list[Any],
        log: Any,
    ) -> None:
        self.states = [WorkerState(f"worker-{i + 1}") for i in range(count)]
        self.scopes: dict[str, trio.CancelScope] = {}
        self.cancelling: set[str] = set()
        self.queue_wait = LatencyWindow()
        self.run_time = LatencyWindow()
        self.clock: WallClock = None  # type: ignore[assignment]
        self.stopping = False
        self._broker = broker
        self._registry = registry
        self._caller = caller
        self._outcomes = outcomes
        self._listeners = listeners
        self._log = log
        # Starts are logged at debug (SPEC §8): at info, one line per job is its outcome.
        self._debug = log_enabled(log, logging.DEBUG)

    def snapshot(self) -> tuple[WorkerStats, ...]:
        """A frozen copy of each worker's state."""
        return tuple(state.snapshot() for state in self.states)

    def on_cancel(self, job_id: str) -> None:
        """Stop a running job of this node that was cancelled (called by the broker)."""
        scope = self.scopes.get(job_id)
        if scope is not None:
            self.cancelling.add(job_id)
            scope.cancel()

    async def _report_progress(self, job: Job, value: Any) -> None:
        # JobContext.set_progress: recorded by the broker, then told to the listeners.
        await self._broker.set_progress(job, value)
        if self._listeners:
            self._outcomes.emit("progress", job)

    async def work(self, state: WorkerState) -> None:
        """The loop of one worker task: fetch a job, run it, record it, until stopping."""
        fetch = self._broker.fetch
        try:
            with trio.CancelScope() as state.scope:
                while not self.stopping:
                    delivery = await fetch(state.id)
                    if state.scope.cancel_called:
                        # Shutdown cancelled this idle worker while its fetch was returning a
                        # job: running it now would be cut at its first checkpoint. Hand it back.
                        with trio.CancelScope(shield=True):
                            await self._broker.release(delivery)
                        break
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
        scope = trio.CancelScope(deadline=self.clock.trio_now() + job.timeout)
        self.scopes[job_id] = scope
        wait = queue_wait(job)
        if wait is not None:
            self.queue_wait.add(wait)
        if self._debug:
            self._log.debug(
                "job started",
                job_id=job_id,
                job_type=job.type,
                worker_id=state.id,
                priority=str(job.priority),
                attempt=job.attempts,
            )
        if self._listeners:
            self._outcomes.emit("started", job)
        ctx = JobContext(job, state.id, self._log, self._report_progress)
        spec = self._registry.find(job.type)
        try:
            attempt = await run_attempt(
                spec, ctx, scope, self._registry, self._caller, self.clock.trio_now
            )
        except BaseException:
            # The node is stopping (grace period over): hand the job back before unwinding,
            # so it is not lost half-run; a job cancelled on request meanwhile ends cancelled.
            with trio.CancelScope(shield=True):
                if job_id in self.cancelling:
                    await self._broker.finish_cancelled(delivery)
                else:
                    await self._broker.release(delivery)
                    if self._listeners:
                        self._outcomes.emit("released", job)
            self.cancelling.discard(job_id)
            self._log.warning("job interrupted by shutdown", job_id=job_id, job_type=job.type)
            raise
        finally:
            del self.scopes[job_id]
        if job_id in self.cancelling:
            self.cancelling.discard(job_id)
            attempt = cancelled(attempt.elapsed)
        self.run_time.add(attempt.elapsed)
        state.processed += 1
        # Recording talks to the broker: a shutdown arriving now must not lose the outcome. The
        # worker's own scope is shielded meanwhile (it is never cancelled while the worker holds
        # a job): toggling a flag costs a fraction of entering a new shielded scope per job.
        if self._broker.records_without_checkpoint:
            # Nothing in the recording can be interrupted: no shield needed.
            recorded = await self._outcomes.record(delivery, attempt)
        else:
            worker_scope: trio.CancelScope = state.scope
            worker_scope.shield = True
            try:
                recorded = await self._outcomes.record(delivery, attempt)
            finally:
                worker_scope.shield = False
        if recorded is not None:
            if recorded:
                state.succeeded += 1
            else:
                state.failed += 1
