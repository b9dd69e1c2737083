"""The last 15 minutes of the job counters, for the dashboard's chart (``GET /stats/history``).

A page that opens cannot know the past, so the server keeps it: :class:`History` samples the
``submitted``, ``completed`` and ``failed`` counters every :data:`INTERVAL` seconds into a
bounded ring of :data:`WINDOW` seconds. On a shared broker (Redis) the counters are the
cluster's, as ``GET /stats`` answers them, so every node draws the same chart; a moment when
the cluster view cannot be read is skipped rather than mixed with this node's own counters.
:func:`trio_tasks.serve` runs the sampler in the nursery of the HTTP server and stops it with
the server.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import attrs
import trio

from .._errors import BrokerUnavailable
from .._job import format_time
from .._processor import Processor

#: Seconds between two samples.
INTERVAL = 10.0
#: Seconds of history kept.
WINDOW = 900.0
#: The key of the app's :class:`History` in ``app.extensions``.
HISTORY_KEY = "trio_tasks_history"
#: The counters sampled.
COUNTERS = ("submitted", "completed", "failed")


@attrs.frozen
class Sample:
    """The counters at one moment (POSIX seconds)."""

    time: float
    submitted: int
    completed: int
    failed: int

    def to_json(self) -> dict[str, Any]:
        """The JSON form (the time in RFC 3339, UTC)."""
        return {
            "time": format_time(self.time),
            "submitted": self.submitted,
            "completed": self.completed,
            "failed": self.failed,
        }


class History:
    """A ring of :class:`Sample` of ``processor``'s counters, one every ``interval`` seconds
    for ``window`` seconds (the newest last)."""

    def __init__(
        self, processor: Processor, *, interval: float = INTERVAL, window: float = WINDOW
    ) -> None:
        self.processor = processor
        self.interval = interval
        self.window = window
        # One more than the window holds: the sample at its start gives its first difference.
        self.samples: deque[Sample] = deque(maxlen=int(window // interval) + 1)
        # Created now so that stop() works before run() starts (the scope is then entered
        # already cancelled).
        self._scope = trio.CancelScope()

    async def sample(self) -> Sample | None:
        """Read the counters now: the cluster's on a shared broker, ``None`` when they cannot
        be read there."""
        processor = self.processor
        counters: dict[str, int] = processor.counters()
        if processor.broker.node_id is not None:
            try:
                cluster = await processor.broker.cluster()
            except BrokerUnavailable:
                return None
            if cluster is None:
                return None
            counters = cluster.totals
        else:
            await trio.lowlevel.checkpoint()
        clock = processor.clock
        now = clock.now() if clock is not None else time.time()
        return Sample(now, *(int(counters.get(name, 0)) for name in COUNTERS))

    async def run(self) -> None:
        """Sample every ``interval`` seconds until :meth:`stop` (or cancellation)."""
        with self._scope:
            deadline = trio.current_time()
            while True:
                sample = await self.sample()
                if sample is not None:
                    self.samples.append(sample)
                # Deadlines, not sleeps: a slow read does not make the samples drift.
                deadline = max(deadline + self.interval, trio.current_time())
                await trio.sleep_until(deadline)

    def stop(self) -> None:
        """End :meth:`run` (at once if it is running, or as soon as it starts)."""
        self._scope.cancel()

    def to_json(self) -> dict[str, Any]:
        """The body of ``GET /stats/history``."""
        return {
            "interval_seconds": self.interval,
            "window_seconds": self.window,
            "cluster": self.processor.broker.node_id is not None,
            "samples": [sample.to_json() for sample in self.samples],
        }
