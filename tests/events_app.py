"""Job types for the event stream tests (``TASKS_APP=events_app:registry``, with ``tests/`` on
``PYTHONPATH``).

``progress`` reports ``0.5``, waits until the file ``payload["gate"]`` exists (checked every
10 ms; at once without a gate), reports ``1.0`` and returns ``{"done": true}``; with
``payload["fail"]`` it fails instead. ``big`` returns a result of ``payload["size"]`` bytes.
"""

from __future__ import annotations

import trio

import trio_tasks

registry = trio_tasks.TaskRegistry()


@registry.task("progress", retries=0)
async def progress(ctx: trio_tasks.JobContext) -> dict[str, bool]:
    """Report progress around a wait for a file (see the module docstring)."""
    await ctx.set_progress(0.5)
    gate = ctx.payload.get("gate")
    # Another process (the test) creates the file: there is nothing to wait on but the file.
    while gate is not None and not await trio.Path(gate).exists():  # noqa: ASYNC110
        await trio.sleep(0.01)
    await ctx.set_progress(1.0)
    if ctx.payload.get("fail"):
        raise RuntimeError("asked to fail")
    return {"done": True}


@registry.task("big")
async def big(ctx: trio_tasks.JobContext) -> str:
    """Return ``payload["size"]`` bytes of text."""
    await trio.lowlevel.checkpoint()
    return "x" * int(ctx.payload.get("size", 1000))
