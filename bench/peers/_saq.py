"""SAQ: a Redis ``Queue``; the worker is ``saq bench.peers._saq.settings --workers 1``."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as _version
from typing import Any

from saq import Queue

from ._client import gather_in_order

RUNTIME = "asyncio"
_URL = os.environ.get("BENCH_PEERS_URL", "redis://127.0.0.1:1/0")


async def noop(ctx: Any) -> None:
    """Do nothing."""


async def sleep(ctx: Any) -> None:
    """Wait 10 ms."""
    await asyncio.sleep(0.010)


queue = Queue.from_url(_URL)

#: The worker's settings (``saq bench.peers._saq.settings``).
settings = {
    "queue": queue,
    "functions": [noop, sleep],
    "concurrency": int(os.environ.get("BENCH_PEERS_CONCURRENCY", "10")),
}


def version() -> str:
    """The installed SAQ."""
    return _version("saq")


class Client:
    """``queue.enqueue`` to submit, ``job.refresh()`` for results."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    async def submit(self, kind: str) -> Any:
        return await self.queue.enqueue(kind)

    async def prequeue(self, kind: str, count: int) -> list[Any]:
        # SAQ's worker sweeps its active list as it starts, concurrently with its first dequeues,
        # and aborts a job it finds there not yet marked active (saq issue #124); with a backlog
        # queued before the spawn that strands a few jobs until their retry, minutes later. The
        # sweep lock held as a worker that swept within the last minute would hold it skips that
        # first sweep (see _systems.py).
        await self.queue.redis.setex(self.queue._sweep, 60, 1)
        return await gather_in_order(lambda: self.queue.enqueue(kind), count)

    async def done(self, job: Any) -> bool:
        await job.refresh()
        return bool(job.completed)

    async def wait(self, job: Any) -> None:
        # job.refresh(until_complete) reads the job, then subscribes to its announcements: a job
        # that finishes in between is never announced (it happened here under load: a 60 s
        # hang). So each subscription waits at most 1 s and the job is read again; a miss costs
        # that second and shows in p99. (queue.apply polls every 0.5 s: p50 1 s.)
        while not job.completed:
            with contextlib.suppress(asyncio.TimeoutError):
                await job.refresh(until_complete=1.0)


@asynccontextmanager
async def open_client(url: str) -> AsyncIterator[Client]:
    """A queue of its own on ``url``."""
    client_queue = Queue.from_url(url)
    await client_queue.connect()
    try:
        yield Client(client_queue)
    finally:
        await client_queue.disconnect()
