"""Plain ``def`` handlers in threads: a limiter of their own, and the threads that outlive
their job counted.

A thread cannot be cancelled. When a job running in one times out or is cancelled, the worker
moves on at once and the thread runs on until its function returns: it is *stuck*. Stuck
threads keep their place in the limiter (Trio releases a thread's token only when it ends),
so the limiter is the node's own (``THREAD_WORKERS``), never Trio's default one that other
libraries share; each stuck thread is logged once with its job and counted
(:attr:`ThreadRunner.stuck`, ``threads_stuck`` in ``/stats`` and ``/metrics``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import trio

from ._context import JobContext


class _Run:
    """One handler call in a thread, as both sides see it."""

    __slots__ = ("abandoned", "done", "started")

    def __init__(self) -> None:
        self.started = False
        self.abandoned = False
        self.done = False


class ThreadRunner:
    """Runs plain ``def`` handlers on at most ``size`` threads at once."""

    def __init__(self, size: int, log: Any) -> None:
        self.limiter = trio.CapacityLimiter(size)
        self._log = log
        self._lock = threading.Lock()
        #: Threads still running the handler of a job that timed out or was cancelled.
        self.stuck = 0

    async def run(self, handler: Callable[[JobContext], Any], ctx: JobContext) -> Any:
        """Call ``handler(ctx)`` in a thread and return its result.

        Cancellation (the job's timeout or cancel) returns at once and leaves the thread
        running; it is counted in :attr:`stuck` until its function returns.
        """
        run = _Run()
        lock = self._lock

        def call() -> Any:
            with lock:
                if run.abandoned:
                    return None  # the job ended before its thread started: do not run it
                run.started = True
            try:
                return handler(ctx)
            finally:
                with lock:
                    run.done = True
                    if run.abandoned:
                        self.stuck -= 1
                if run.abandoned:
                    self._log.info(
                        "stuck thread finished", job_id=ctx.job.id, job_type=ctx.job.type
                    )

        try:
            return await trio.to_thread.run_sync(call, abandon_on_cancel=True, limiter=self.limiter)
        except trio.Cancelled:
            with lock:
                run.abandoned = True
                started_and_running = run.started and not run.done
                if started_and_running:
                    self.stuck += 1
            if started_and_running:
                self._log.warning(
                    "thread keeps running after its job ended: it cannot be killed",
                    job_id=ctx.job.id,
                    job_type=ctx.job.type,
                    threads_stuck=self.stuck,
                    threads=self.limiter.total_tokens,
                )
            raise
