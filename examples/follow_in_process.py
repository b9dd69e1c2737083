"""Follow a job's life in the same program: ``processor.events`` is the hub that feeds the
HTTP event streams (docs/library.md, "Following jobs").

Run it: ``python examples/follow_in_process.py``.
"""

import json

import trio

import trio_tasks

tasks = trio_tasks.TaskRegistry()


@tasks.task("import")
async def import_rows(ctx: trio_tasks.JobContext) -> dict[str, int]:
    for done in range(1, 4):
        await trio.sleep(0.01)
        await ctx.set_progress(done / 3)
    return {"rows": 3}


async def main() -> None:
    async with trio_tasks.open_processor(tasks, workers=2) as processor:
        # Subscribe to the job's id first, then submit it under that id: no event is missed.
        subscription = processor.events.subscribe(job_id="import-1")
        job = await processor.submit("import", job_id="import-1")
        try:
            while batch := await subscription.next_batch():
                for event in batch:
                    data = json.loads(event.data)
                    if event.kind == "progress":
                        print(f"progress {data['progress']:.0%}")
                    else:
                        print(f"state {event.status}")
                if any(event.final for event in batch):
                    break
        finally:
            subscription.close()
        print("result", (await processor.get(job.id)).result)


if __name__ == "__main__":
    trio.run(main)
