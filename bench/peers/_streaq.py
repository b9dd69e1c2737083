"""streaQ: the worker is ``streaq run bench.peers._streaq:worker``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as _version
from typing import Any

from streaq import TaskStatus, Worker

from ._client import gather_in_order

RUNTIME = "asyncio"
_URL = os.environ.get("BENCH_PEERS_URL", "redis://127.0.0.1:1/0")

worker: Worker[Any] = Worker(
    redis_url=_URL, concurrency=int(os.environ.get("BENCH_PEERS_CONCURRENCY", "16"))
)


@worker.task
async def noop() -> None:
    """Do nothing."""


@worker.task
async def sleep() -> None:
    """Wait 10 ms."""
    await asyncio.sleep(0.010)


_TASKS = {"noop": noop, "sleep": sleep}


def version() -> str:
    """The installed streaQ."""
    return _version("streaq")


class Client:
    """``task.enqueue()`` to submit, ``status()`` and ``result()`` for results."""

    async def submit(self, kind: str) -> Any:
        return await _TASKS[kind].enqueue()

    async def prequeue(self, kind: str, count: int) -> list[Any]:
        return await gather_in_order(lambda: _TASKS[kind].enqueue(), count)

    async def done(self, task: Any) -> bool:
        return bool(await task.status() == TaskStatus.DONE)

    async def wait(self, task: Any) -> None:
        await task.result(timeout=60)


@asynccontextmanager
async def open_client(url: str) -> AsyncIterator[Client]:
    """The module's worker object used as a client (``async with worker``)."""
    async with worker:
        yield Client()
