"""Group outcomes that workers record at the same moment into one write.

Used by the Redis broker so that N workers finishing together cost one round trip, not N,
without a background task: the first caller writes a batch while others queue behind it, and
the oldest of those writes the next one, so no worker works for others indefinitely.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import trio

T = TypeVar("T")
R = TypeVar("R")


class Pending(Generic[T, R]):
    """One item waiting to be written, and, once written, its ``result`` (``None`` if the
    write failed) and the ``time`` the write function reported."""

    __slots__ = ("event", "item", "lead", "result", "time")

    def __init__(self, item: T) -> None:
        self.item = item
        self.event = trio.Event()
        self.lead = False
        self.result: R | None = None
        self.time = 0.0


class Batcher(Generic[T, R]):
    """Calls ``write(items)`` with the items submitted while the previous call ran.

    ``write`` returns ``(time, results)``, one result per item, or ``None`` when it gave up
    (it must not raise, and must end: its callers wait for it shielded from cancellation).
    """

    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[tuple[float, Sequence[R]] | None]],
        *,
        max_batch: int = 256,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._queue: list[Pending[T, R]] = []
        self._writing = False

    async def submit(self, item: T) -> Pending[T, R]:
        """Write ``item`` (with whatever else is waiting) and return it with its result.

        Cancellation: waiting for another caller's write is shielded (that write is bounded);
        the caller sees a cancellation at its next checkpoint.
        """
        pending: Pending[T, R] = Pending(item)
        self._queue.append(pending)
        if self._writing:
            with trio.CancelScope(shield=True):
                await pending.event.wait()
            if not pending.lead:
                return pending
        self._writing = True
        batch = self._queue[: self._max_batch]
        del self._queue[: self._max_batch]
        try:
            written = await self._write([p.item for p in batch])
            if written is not None:
                time, results = written
                for p, result in zip(batch, results, strict=True):
                    p.time = time
                    p.result = result
        finally:
            for p in batch:
                if p is not pending:
                    p.event.set()
            if self._queue:
                leader = self._queue[0]
                leader.lead = True
                leader.event.set()
            else:
                self._writing = False
        return pending
