"""Per-type limits: at most two ``report`` jobs run at once and ten start per second, while
``ping`` jobs, which have no limits, run past the held-back reports (docs/scheduling.md,
"Per-type limits").

Run it: ``python examples/limits.py``.
"""

import trio

import trio_tasks

tasks = trio_tasks.TaskRegistry()
reports_may_finish = trio.Event()
two_reports_running = trio.Event()
running_reports = 0


@tasks.task("report", concurrency=2, rate="10/s")
async def build_report(ctx: trio_tasks.JobContext) -> str:
    global running_reports
    running_reports += 1
    if running_reports == 2:
        two_reports_running.set()
    try:
        await reports_may_finish.wait()
    finally:
        running_reports -= 1
    return f"report {ctx.payload['n']}"


@tasks.task("ping")
async def ping(ctx: trio_tasks.JobContext) -> str:
    return "pong"


async def main() -> None:
    async with trio_tasks.open_processor(tasks, workers=4) as processor:
        reports = [await processor.submit("report", {"n": n}) for n in range(6)]
        await two_reports_running.wait()
        # Two workers are free: the four reports held back do not hold them.
        pong = await processor.wait((await processor.submit("ping")).id)
        print("ping:", pong.result, "while reports running:", running_reports)
        while True:  # until the free workers have fetched (and held) the other four
            figures = (await processor.stats()).limits["report"]
            if figures.held == 4:
                break
            await trio.sleep(0.01)
        print("limits:", figures.to_json())
        reports_may_finish.set()
        done = [await processor.wait(job.id) for job in reports]
        print("reports:", [job.result for job in done])
        print("limits:", (await processor.stats()).limits["report"].to_json())


if __name__ == "__main__":
    trio.run(main)
