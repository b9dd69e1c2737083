"""Handlers for the benchmarks, loaded by servers and workers with ``TASKS_APP=bench.app:tasks``."""

from __future__ import annotations

import trio

import trio_tasks

tasks = trio_tasks.TaskRegistry()


@tasks.task("noop")
async def noop(ctx: trio_tasks.JobContext) -> None:
    """Do nothing: measures the queue, not the work."""


@tasks.task("sleep")
async def sleep_10ms(ctx: trio_tasks.JobContext) -> None:
    """Wait 10 ms, like a job that calls a fast remote service."""
    await trio.sleep(0.010)
