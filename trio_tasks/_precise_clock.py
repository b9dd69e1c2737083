"""A Trio clock that wakes on time instead of up to a millisecond late."""

from __future__ import annotations

import time

import trio

# epoll and kqueue take their timeout in whole milliseconds, rounded up: a task sleeping 10 ms
# wakes after 10-11 ms, and with many short sleeps that lost millisecond adds up (100 tasks
# sleeping 10 ms in a loop reach ~80% of the ideal rate). Asking the OS for slightly less lands
# the wakeup on the deadline; the last fraction of a millisecond is then a short spin.
_EARLY = 0.0009


class PreciseClock(trio.abc.Clock):
    """The system clock, with sleeps that end on their deadline rather than after it.

    Pass it to :func:`trio.run` (``trio.run(main, clock=PreciseClock())``). The cost is a spin
    of under a millisecond before each timer expires; worth it when many jobs sleep or time out
    on short scales. ``trio-tasks serve`` and ``trio-tasks worker`` use it.
    """

    __slots__ = ("_offset",)

    def __init__(self) -> None:
        self._offset = 0.0

    def start_clock(self) -> None:
        """Anchor the clock (called once by :func:`trio.run`)."""
        self._offset = 1e4 - time.perf_counter()

    def current_time(self) -> float:
        """Seconds on a monotonic clock, like Trio's default clock."""
        return self._offset + time.perf_counter()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """How long the OS should block before ``deadline`` is due (slightly less than exact)."""
        return max(0.0, deadline - self.current_time() - _EARLY)
