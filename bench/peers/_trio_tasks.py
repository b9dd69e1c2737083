"""trio-tasks: the worker is ``trio-tasks worker`` with ``TASKS_APP=bench.peers._trio_tasks:tasks``;
the client is a ``workers=0`` processor (``processor.submit``, ``get``, ``wait``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as _version

import trio

import trio_tasks

RUNTIME = "trio"
#: The worker's environment (besides BROKER_URL and WORKER_NUM_WORKERS, set by the harness).
APP = "bench.peers._trio_tasks:tasks"

tasks = trio_tasks.TaskRegistry()


@tasks.task("noop")
async def noop(ctx: trio_tasks.JobContext) -> None:
    """Do nothing."""


@tasks.task("sleep")
async def sleep(ctx: trio_tasks.JobContext) -> None:
    """Wait 10 ms."""
    await trio.sleep(0.010)


def version() -> str:
    """The installed trio-tasks."""
    return _version("trio-tasks")


class Client:
    """A producer that runs no jobs."""

    def __init__(self, processor: trio_tasks.Processor) -> None:
        self.processor = processor

    async def submit(self, kind: str) -> str:
        return (await self.processor.submit(kind)).id

    async def prequeue(self, kind: str, count: int) -> list[str]:
        request = trio_tasks.JobRequest(type=kind)
        ids: list[str] = []
        for first in range(0, count, 500):
            admissions = await self.processor.submit_many([request] * min(500, count - first))
            ids.extend(admission.job.id for admission in admissions)
        return ids

    async def done(self, job_id: str) -> bool:
        return (await self.processor.get(job_id)).status.is_final

    async def wait(self, job_id: str) -> None:
        await self.processor.wait(job_id)


@asynccontextmanager
async def open_client(url: str) -> AsyncIterator[Client]:
    """A ``workers=0`` processor on ``url``, every setting at its default."""
    async with trio_tasks.open_processor(tasks, broker=url, workers=0) as processor:
        yield Client(processor)
        processor.shutdown(grace=0)
