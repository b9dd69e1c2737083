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

    __slots__ = ("_offset",)

    def __init__(self) -> None:
        self._offset = time.time() - trio.current_time()

    def now(self) -> float:
        """Current POSIX time in seconds."""
        return self._offset + trio.current_time()

    def to_trio(self, wall: float) -> float:
        """Convert POSIX seconds into a :func:`trio.current_time` deadline."""
        return wall - self._offset
