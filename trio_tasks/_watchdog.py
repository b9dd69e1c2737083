"""Naming what froze the event loop: a watchdog thread beside the Trio loop.

A handler that blocks (``time.sleep``, a CPU-bound loop, a synchronous client) in an ``async
def`` stops every task of the node: other jobs, the HTTP API, Redis heartbeats. Trio cannot
interrupt it, so its timeout cannot either. The watchdog cannot stop it; it says which job it is.

How: a Trio instrument notes when the loop leaves its I/O wait to run tasks and when it returns
to it (two attribute writes per scheduling batch, nothing per task). A daemon thread looks every
quarter of the threshold; when the loop has been running tasks without returning to its I/O wait
for longer than the threshold, it reads the Trio thread's stack for the job whose handler is
running (the ``ctx`` of :func:`trio_tasks._runner.run_attempt`) and logs one warning, then one
line when the loop is responsive again.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import trio

from ._runner import run_attempt

_RUN_ATTEMPT = run_attempt.__code__


class _LoopMonitor(trio.abc.Instrument):
    """Records, from inside the loop, when the current batch of task steps began."""

    __slots__ = ("busy_since", "waiting")

    def __init__(self) -> None:
        self.waiting = True
        self.busy_since = time.monotonic()

    def before_io_wait(self, timeout: float) -> None:
        self.waiting = True

    def after_io_wait(self, timeout: float) -> None:
        self.busy_since = time.monotonic()
        self.waiting = False


class LoopWatchdog:
    """Warns through ``log`` when the Trio loop is blocked for more than ``threshold`` seconds.

    Use :meth:`running` around the code whose loop it watches (the processor's run).
    """

    def __init__(self, threshold: float, log: Any) -> None:
        self.threshold = threshold
        self._log = log
        self._monitor = _LoopMonitor()
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()

    def running(self) -> _Running:
        """A context manager: the instrument and the thread live while it is entered."""
        return _Running(self)

    def _watch(self) -> None:
        monitor = self._monitor
        period = self.threshold / 4
        warned_for: float | None = None
        while not self._stop.wait(period):
            since = monitor.busy_since
            if warned_for is not None and (monitor.waiting or since != warned_for):
                self._log.warning(
                    "event loop responsive again",
                    blocked_for=round(time.monotonic() - warned_for, 3),
                )
                warned_for = None
            if monitor.waiting or warned_for is not None:
                continue
            blocked = time.monotonic() - since
            if blocked > self.threshold and since == monitor.busy_since:
                warned_for = since
                self._warn(blocked)

    def _warn(self, blocked: float) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        fields: dict[str, Any] = {"blocked_for": round(blocked, 3), "threshold": self.threshold}
        ctx = _running_job(frame)
        if ctx is not None:
            job = ctx.job
            fields.update(job_id=job.id, job_type=job.type, worker_id=ctx.worker_id)
            message = "a job's handler is blocking the event loop"
        else:
            message = "the event loop is blocked"
        if frame is not None:
            code = frame.f_code
            fields["where"] = f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
        self._log.warning(message, **fields)


class _Running:
    __slots__ = ("_thread", "_watchdog")

    def __init__(self, watchdog: LoopWatchdog) -> None:
        self._watchdog = watchdog
        self._thread: threading.Thread | None = None

    def __enter__(self) -> None:
        watchdog = self._watchdog
        watchdog._loop_thread = threading.get_ident()
        trio.lowlevel.add_instrument(watchdog._monitor)
        self._thread = threading.Thread(
            target=watchdog._watch, name="trio-tasks loop watchdog", daemon=True
        )
        self._thread.start()

    def __exit__(self, *exc: object) -> None:
        watchdog = self._watchdog
        watchdog._stop.set()
        trio.lowlevel.remove_instrument(watchdog._monitor)
        if self._thread is not None:
            # The thread wakes at once on the event: joining does not hold the loop.
            self._thread.join(timeout=1.0)


def _frames(frame: FrameType | None) -> Iterator[FrameType]:
    while frame is not None:
        yield frame
        frame = frame.f_back


def _running_job(frame: FrameType | None) -> Any:
    """The ``JobContext`` of the handler on this stack, if one is running."""
    for current in _frames(frame):
        if current.f_code is _RUN_ATTEMPT:
            return current.f_locals.get("ctx")
    return None
