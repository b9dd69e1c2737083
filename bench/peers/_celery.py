"""Celery with Redis as broker and result backend; the worker is
``celery -A bench.peers._celery worker --pool threads --concurrency C``."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as _version
from typing import Any

from celery import Celery

RUNTIME = "asyncio"
_URL = os.environ.get("BENCH_PEERS_URL", "redis://127.0.0.1:1/0")

app = Celery("bench_peers", broker=_URL, backend=_URL)


@app.task(name="noop")
def noop() -> None:
    """Do nothing."""


@app.task(name="sleep")
def sleep() -> None:
    """Wait 10 ms (a pool thread)."""
    time.sleep(0.010)


_TASKS = {"noop": noop, "sleep": sleep}


def version() -> str:
    """Celery and kombu."""
    return f"{_version('celery')} (kombu {_version('kombu')})"


class Client:
    """``delay()`` to submit, ``ready()`` and ``get()`` for results (synchronous calls)."""

    async def submit(self, kind: str) -> Any:
        return _TASKS[kind].delay()

    async def prequeue(self, kind: str, count: int) -> list[Any]:
        return [_TASKS[kind].delay() for _ in range(count)]

    async def done(self, result: Any) -> bool:
        return bool(result.ready())

    async def wait(self, result: Any) -> None:
        result.get(timeout=60)


@asynccontextmanager
async def open_client(url: str) -> AsyncIterator[Client]:
    """The module's app (configured from ``BENCH_PEERS_URL``)."""
    yield Client()
