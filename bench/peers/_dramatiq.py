"""Dramatiq with its Redis broker and the Results middleware on Redis; the worker is
``dramatiq bench.peers._dramatiq --processes 1 --threads C``."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as _version
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import ResultMissing, Results
from dramatiq.results.backends import RedisBackend

RUNTIME = "asyncio"
_URL = os.environ.get("BENCH_PEERS_URL", "redis://127.0.0.1:1/0")

broker = RedisBroker(url=_URL)
broker.add_middleware(Results(backend=RedisBackend(url=_URL)))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True)
def noop() -> None:
    """Do nothing."""


@dramatiq.actor(store_results=True)
def sleep() -> None:
    """Wait 10 ms (a worker thread)."""
    time.sleep(0.010)


_ACTORS = {"noop": noop, "sleep": sleep}


def version() -> str:
    """The installed Dramatiq."""
    return _version("dramatiq")


class Client:
    """``send()`` to submit, ``get_result(block=False)`` / ``get_result(block=True)``
    for results (Dramatiq's client is synchronous: the calls block, which is what its caller
    does)."""

    async def submit(self, kind: str) -> Any:
        return _ACTORS[kind].send()

    async def prequeue(self, kind: str, count: int) -> list[Any]:
        return [_ACTORS[kind].send() for _ in range(count)]

    async def done(self, message: Any) -> bool:
        try:
            message.get_result(block=False)
        except ResultMissing:
            return False
        return True

    async def wait(self, message: Any) -> None:
        message.get_result(block=True, timeout=60_000)


@asynccontextmanager
async def open_client(url: str) -> AsyncIterator[Client]:
    """The module's broker (configured from ``BENCH_PEERS_URL``)."""
    yield Client()
