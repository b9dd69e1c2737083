"""The app of tests/test_startup.py's worker: its job reports what the worker has imported."""

from __future__ import annotations

import sys

import trio_tasks

tasks = trio_tasks.TaskRegistry()

#: Modules a `trio-tasks worker` on one Redis server must not have imported by its first job.
NOT_ON_A_REDIS_WORKER = ("coredis", "structlog", "anyio", "beartype", "quart", "hypercorn")


@tasks.task("imported")
async def imported(ctx: trio_tasks.JobContext) -> list[str]:
    """Which of :data:`NOT_ON_A_REDIS_WORKER` this process has imported."""
    return [name for name in NOT_ON_A_REDIS_WORKER if name in sys.modules]
