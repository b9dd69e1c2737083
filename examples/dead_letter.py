"""Failed jobs you can act on: a job fails, the cause is fixed, the job runs again under the
same id with its earlier error kept (docs/scheduling.md, "Failed jobs").

Run it: ``python examples/dead_letter.py``.
"""

import trio

import trio_tasks

tasks = trio_tasks.TaskRegistry()
mail_server_up = False


@tasks.task("email", retries=1, timeout="5s")
async def send_email(ctx: trio_tasks.JobContext) -> dict[str, bool]:
    if not mail_server_up:
        raise ConnectionError("mail server unreachable")
    return {"sent": True}


async def main() -> None:
    global mail_server_up
    async with trio_tasks.open_processor(tasks, workers=2, retry_delay="10ms") as processor:
        job = await processor.submit("email", {"to": "x@example.org"}, job_id="welcome-42")
        failed = await processor.wait(job.id)
        print(failed.status, failed.attempts, failed.error.message if failed.error else None)

        for dead in await processor.list_jobs(status="failed", type="email"):
            print("dead letter:", dead.id)

        mail_server_up = True  # the cause is fixed: queue the failed jobs again
        batch = await processor.retry_failed(type="email", since="1h")
        print("requeued", [j.id for j in batch.jobs])
        done = await processor.wait(job.id)
        print(done.status, done.attempts, done.result, done.errors[0]["message"])


if __name__ == "__main__":
    trio.run(main)
