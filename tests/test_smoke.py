import trio

import trio_tasks


async def test_submit_and_wait(autojump_clock: trio.abc.Clock) -> None:
    tasks = trio_tasks.TaskRegistry()

    @tasks.task("add")
    async def add(ctx: trio_tasks.JobContext) -> int:
        await trio.sleep(1)
        return int(ctx.payload["a"]) + int(ctx.payload["b"])

    async with trio_tasks.open_processor(tasks, workers=2) as processor:
        job = await processor.submit("add", {"a": 1, "b": 2})
        done = await processor.wait(job.id)
    assert done.status is trio_tasks.JobStatus.COMPLETED
    assert done.result == 3
