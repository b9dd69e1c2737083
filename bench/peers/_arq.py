"""arq: the worker is ``arq bench.peers._arq.WorkerSettings``; the client an ``ArqRedis`` pool."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as _version
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import RedisSettings

from ._client import gather_in_order

RUNTIME = "asyncio"
_URL = os.environ.get("BENCH_PEERS_URL", "redis://127.0.0.1:1/0")


async def noop(ctx: Any) -> None:
    """Do nothing."""


async def sleep(ctx: Any) -> None:
    """Wait 10 ms."""
    await asyncio.sleep(0.010)


class WorkerSettings:
    """The worker's settings (see _systems.py for poll_delay)."""

    functions: ClassVar[list[Any]] = [noop, sleep]
    redis_settings = RedisSettings.from_dsn(_URL)
    max_jobs = int(os.environ.get("BENCH_PEERS_CONCURRENCY", "10"))
    poll_delay = 0.01


def version() -> str:
    """The installed arq."""
    return _version("arq")


class Client:
    """``enqueue_job`` to submit, ``result_info()`` and ``result()`` for results."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def submit(self, kind: str) -> Any:
        return await self.pool.enqueue_job(kind)

    async def prequeue(self, kind: str, count: int) -> list[Any]:
        return await gather_in_order(lambda: self.pool.enqueue_job(kind), count)

    async def done(self, job: Any) -> bool:
        return await job.result_info() is not None

    async def wait(self, job: Any) -> None:
        await job.result(timeout=60, poll_delay=0.001)


@asynccontextmanager
async def open_client(url: str) -> AsyncIterator[Client]:
    """An arq pool on ``url``."""
    pool = await create_pool(RedisSettings.from_dsn(url))
    try:
        yield Client(pool)
    finally:
        await pool.aclose()
