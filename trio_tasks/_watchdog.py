"""Naming what froze the event loop: a watchdog thread beside the Trio loop.

A handler that blocks (``time.sleep``, a CPU-bound loop, a synchronous client) in an ``async
def`` stops every task of the node: other jobs, the HTTP API, Redis heartbeats. Trio cannot
interrupt it, so its timeout cannot either. The watchdog cannot stop it; it says which job it is.

How: a Trio task beats every half threshold (writes a timestamp); a daemon thread looks once per
threshold. When the beat is overdue by more than the threshold, the loop has not run that task
for that long: the thread reads the Trio thread's stack for the job whose handler is running (the
``ctx`` of :func:`trio_tasks._runner.run_attempt`) and logs one warning, then one line when the
loop is beating again. So a block is always reported once it lasts about twice the threshold,
and usually sooner. Nothing is done per job; the cost is the thread's wake-ups, each of which
takes the GIL from the loop for a moment (measured: about 3% of a loop saturated with no-op jobs
at the default 100 ms, twice that when the thread looked every half threshold). Under a
``MockClock`` (tests) virtual time cannot be blocked: the watchdog does not run.
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


class LoopWatchdog:
    """Warns through ``log`` when the Trio loop is blocked for more than ``threshold`` seconds.

    Run :meth:`run` in a nursery of the loop it watches (the processor's).
    """

    def __init__(self, threshold: float, log: Any) -> None:
        self.threshold = threshold
        self.period = threshold / 2
        self._log = log
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()

    async def run(self) -> None:
        """Beat until cancelled, with the watching thread alive meanwhile."""
        if _is_mock_clock(trio.lowlevel.current_clock()):
            return
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        thread = threading.Thread(target=self._watch, name="trio-tasks loop watchdog", daemon=True)
        thread.start()
        try:
            while True:
                await trio.sleep(self.period)
                self._beat = time.monotonic()
        finally:
            self._stop.set()
            # The thread wakes at once on the event: joining does not hold the loop.
            thread.join(timeout=1.0)

    def _watch(self) -> None:
        period = self.period
        warned_for: float | None = None
        while not self._stop.wait(self.threshold):
            beat = self._beat
            if warned_for is not None:
                if beat != warned_for:
                    blocked = beat - warned_for - period
                    self._log.warning("event loop responsive again", blocked_for=round(blocked, 3))
                    warned_for = None
                continue
            blocked = time.monotonic() - beat - period
            if blocked > self.threshold:
                warned_for = beat
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


def _is_mock_clock(clock: trio.abc.Clock) -> bool:
    # trio.testing imports pytest when it is installed (a tenth of a second of a worker's
    # start-up): a MockClock can only exist if trio.testing was imported already.
    testing = sys.modules.get("trio.testing")
    return testing is not None and isinstance(clock, testing.MockClock)
