"""Job types for the dashboard's browser tests (``TASKS_APP=dashboard_app:registry``, with
``tests/`` on ``PYTHONPATH``)."""

from __future__ import annotations

import os
from pathlib import Path

import trio

import trio_tasks

registry = trio_tasks.TaskRegistry()

#: What the ``hostile`` job fails with: markup that would run if a page rendered it as HTML.
HOSTILE = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'


@registry.task("steps")
async def steps(ctx: trio_tasks.JobContext) -> dict[str, int]:
    """Report progress ``{"done": i, "total": n}`` for ``payload["steps"]`` steps. With
    ``payload["gated"]`` step ``i`` waits for the file ``<job id>.<i>`` in the directory
    ``$DASHBOARD_GATES``, so that a test moves the job on itself; otherwise each step takes
    ``payload["delay"]`` seconds."""
    total = int(ctx.payload.get("steps", 5))
    gates = Path(os.environ.get("DASHBOARD_GATES", "."))
    for step in range(1, total + 1):
        if ctx.payload.get("gated"):
            while not (gates / f"{ctx.job.id}.{step}").exists():  # noqa: ASYNC110 (a file)
                await trio.sleep(0.02)
        else:
            await trio.sleep(float(ctx.payload.get("delay", 0.2)))
        await ctx.set_progress({"done": step, "total": total})
    return {"steps": total}


@registry.task("hold")
async def hold(ctx: trio_tasks.JobContext) -> None:
    """Run until cancelled (at most ``payload["seconds"]``, default an hour)."""
    await ctx.set_progress(0.25)
    await trio.sleep(float(ctx.payload.get("seconds", 3600)))


@registry.task(HOSTILE)
async def hostile_type(ctx: trio_tasks.JobContext) -> None:
    """A job type whose name is markup."""
    await trio.lowlevel.checkpoint()


@registry.task("hostile")
async def hostile(ctx: trio_tasks.JobContext) -> None:
    """Fail with a message (and an error type) that is markup."""
    await trio.lowlevel.checkpoint()
    raise ValueError(HOSTILE)
