"""Embed the trio-tasks engine in a Trio program, without the HTTP layer.

Run it with ``python examples/embed.py``. It registers three handlers, submits jobs at
different priorities, waits for them and prints what happened, then leaves the ``async with``
block, which drains the workers gracefully.
"""

from __future__ import annotations

import logging

import structlog
import trio

import trio_tasks

# trio-tasks logs through structlog; an application configures it once. Here: warnings only.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

tasks = trio_tasks.TaskRegistry()


@tasks.task("resize", timeout="5s", retries=2)
async def resize(ctx: trio_tasks.JobContext) -> dict[str, int]:
    """Pretend to resize an image, reporting progress along the way."""
    width = int(ctx.payload["width"])
    for step in range(1, 5):
        await trio.sleep(0.005)
        await ctx.set_progress(step / 4)
    return {"width": width // 2}


@tasks.task("flaky", retries=3)
async def flaky(ctx: trio_tasks.JobContext) -> str:
    """Fail the first two attempts, asking for a quick retry, then succeed."""
    if ctx.attempt < 3:
        raise trio_tasks.Retry(delay=0.01, message=f"attempt {ctx.attempt} failed")
    return f"succeeded on attempt {ctx.attempt}"


@tasks.task("checksum")
def checksum(ctx: trio_tasks.JobContext) -> int:
    """A plain function: it runs in a worker thread so it cannot block the event loop."""
    return sum(str(ctx.payload["text"]).encode())


async def main() -> None:
    async with trio_tasks.open_processor(tasks, workers=4, max_concurrency=50) as processor:
        jobs = [
            await processor.submit("resize", {"width": 1024}, priority="low"),
            await processor.submit("flaky", priority="urgent"),
            await processor.submit("checksum", {"text": "hello"}, priority="high"),
        ]
        for job in jobs:
            done = await processor.wait(job.id)
            print(
                f"{done.type:9} {done.status.value:10} attempts={done.attempts} "
                f"result={done.result!r}"
            )
        stats = await processor.stats()
        print(
            f"submitted={stats.submitted} completed={stats.completed} "
            f"retried={stats.retried} failed={stats.failed}"
        )


if __name__ == "__main__":
    trio.run(main)
