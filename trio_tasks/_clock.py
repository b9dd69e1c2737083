"""Wall-clock time that follows Trio's clock, so ``MockClock`` drives timestamps in tests too."""

from __future__ import annotations

import time

import trio


class WallClock:
    """POSIX time derived from :func:`trio.current_time`.

    Anchored once (inside a running Trio loop) to ``time.time()``; from then on, wall time moves
    with Trio's clock. Under ``MockClock`` that makes every ``created_at``/``run_at`` exact and
    lets a job scheduled "in 1h" run after one virtual hour.
    """

    __slots__ = ("_offset", "trio_now")

    def __init__(self) -> None:
        #: The run's clock, read directly: the same value as :func:`trio.current_time`, without
        #: its lookup on every call (it is read several times per job).
        self.trio_now = trio.lowlevel.current_clock().current_time
        self._offset = time.time() - self.trio_now()

    def now(self) -> float:
        """Current POSIX time in seconds."""
        return self._offset + self.trio_now()

    def to_trio(self, wall: float) -> float:
        """Convert POSIX seconds into a :func:`trio.current_time` deadline."""
        return wall - self._offset
