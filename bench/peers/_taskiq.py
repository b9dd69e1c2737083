"""taskiq with taskiq-redis: a ``RedisStreamBroker`` and a ``RedisAsyncResultBackend``; the worker
is ``taskiq worker bench.peers._taskiq:broker``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as _version
from typing import Any

from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from ._client import gather_in_order

RUNTIME = "asyncio"
_URL = os.environ.get("BENCH_PEERS_URL", "redis://127.0.0.1:1/0")

broker = RedisStreamBroker(url=_URL).with_result_backend(RedisAsyncResultBackend(redis_url=_URL))


@broker.task(task_name="noop")
async def noop() -> None:
    """Do nothing."""


@broker.task(task_name="sleep")
async def sleep() -> None:
    """Wait 10 ms."""
    await asyncio.sleep(0.010)


_TASKS = {"noop": noop, "sleep": sleep}


def version() -> str:
    """taskiq and taskiq-redis."""
    return f"{_version('taskiq')} (taskiq-redis {_version('taskiq-redis')})"


class Client:
    """``kiq()`` to submit, ``is_ready()`` and ``wait_result()`` for results."""

    async def submit(self, kind: str) -> Any:
        return await _TASKS[kind].kiq()

    async def prequeue(self, kind: str, count: int) -> list[Any]:
        return await gather_in_order(lambda: _TASKS[kind].kiq(), count)

    async def done(self, task: Any) -> bool:
        return bool(await task.is_ready())

    async def wait(self, task: Any) -> None:
        result = await task.wait_result(check_interval=0.001, timeout=60)
        if result.is_err:
            raise RuntimeError(result.error)


@asynccontextmanager
async def open_client(url: str) -> AsyncIterator[Client]:
    """The broker started as a client."""
    await broker.startup()
    try:
        yield Client()
    finally:
        await broker.shutdown()
