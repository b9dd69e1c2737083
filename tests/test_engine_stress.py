"""Stress: 20,000 jobs from many concurrent submitters, every one accounted for exactly once.

Each job carries a plan (what each attempt does: succeed, raise, time out, ask for a retry, fail
permanently, return something that is not JSON), drawn from a seeded RNG, so the final state of
every job that was not cancelled is known in advance. Submitters retry on ``QueueFull``; some
jobs are submitted twice with the same id, some are cancelled at a random moment. Runs under the
autojump clock: minutes of virtual time in a few real seconds.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any

import trio
import trio.lowlevel
import trio.testing

from trio_tasks import (
    Job,
    JobAlreadyFinished,
    JobContext,
    JobRequest,
    JobStatus,
    PermanentError,
    Priority,
    QueueFull,
    Retry,
    TaskRegistry,
    open_processor,
)

JOBS = 20_000
SUBMITTERS = 40
WORKERS = 64
MAX_CONCURRENCY = 1_000
TIMEOUT = 2.0
FINAL = ("completed", "failed", "cancelled")

# What one attempt does, with its weight.
KINDS = {"ok": 70, "error": 12, "timeout": 6, "retry": 6, "permanent": 4, "unjson": 2}
FAILS_AND_RETRIES = {"error", "timeout", "retry"}


class Silent:
    """A logger that drops everything (the engine checks ``is_enabled_for`` once)."""

    def is_enabled_for(self, level: int) -> bool:
        return False

    def bind(self, **values: Any) -> Silent:
        return self

    def _drop(self, *args: Any, **kwargs: Any) -> None:
        return None

    debug = info = warning = error = exception = critical = _drop


def make_plan(rng: random.Random) -> dict[str, Any]:
    kinds, weights = zip(*KINDS.items(), strict=True)
    attempts = [
        [rng.choices(kinds, weights)[0], round(rng.uniform(0, 1.5), 3)]
        for _ in range(rng.randint(1, 5))
    ]
    return {"plan": attempts, "retries": rng.randint(0, 3)}


def expected_outcome(plan: dict[str, Any]) -> tuple[JobStatus, int, str | None, str | None]:
    """(status, attempts, error type, error message prefix) that the plan must end in."""
    steps, max_attempts = plan["plan"], plan["retries"] + 1
    for attempt in range(1, max_attempts + 1):
        kind = steps[attempt - 1][0] if attempt <= len(steps) else "ok"
        if kind == "ok":
            return JobStatus.COMPLETED, attempt, None, None
        if kind == "permanent":
            return JobStatus.FAILED, attempt, "PermanentError", f"permanent on {attempt}"
        if kind == "unjson":
            return JobStatus.FAILED, attempt, "PermanentError", "result is not JSON-serialisable"
        if attempt == max_attempts:
            error = {
                "error": ("ValueError", f"boom on {attempt}"),
                "timeout": ("TimeoutError", "timed out after 2s"),
                "retry": ("Retry", "retry requested"),
            }[kind]
            return JobStatus.FAILED, attempt, *error
    raise AssertionError("unreachable")


async def work(ctx: JobContext) -> Any:
    steps = ctx.payload["plan"]
    kind, seconds = steps[ctx.attempt - 1] if ctx.attempt <= len(steps) else ("ok", 0.0)
    if kind == "timeout":
        await trio.sleep(TIMEOUT + 1)
    await trio.sleep(seconds)
    if kind == "error":
        raise ValueError(f"boom on {ctx.attempt}")
    if kind == "retry":
        raise Retry(delay=seconds)
    if kind == "permanent":
        raise PermanentError(f"permanent on {ctx.attempt}")
    if kind == "unjson":
        return {"not json": {ctx.attempt}}
    return {"attempt": ctx.attempt}


async def test_twenty_thousand_jobs_are_each_accounted_for_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = TaskRegistry()
    tasks.register("work", work)

    plans: dict[str, dict[str, Any]] = {}
    events: defaultdict[str, list[str]] = defaultdict(list)
    finals: dict[str, Job] = {}
    cancel_ok: set[str] = set()
    cancel_late: set[str] = set()
    cancelled_while: Counter[JobStatus] = Counter()
    refusals = 0
    duplicates = 0

    def listen(event: str, job: Job) -> None:
        events[job.id].append(event)
        if event in FINAL:
            finals[job.id] = Job(**{f: getattr(job, f) for f in Job.__slots__ if f[0] != "_"})

    async with open_processor(
        tasks,
        workers=WORKERS,
        max_concurrency=MAX_CONCURRENCY,
        job_timeout=TIMEOUT,
        retry_delay="100ms",
        retry_max_delay="1s",
        result_ttl="1000h",
        result_max_jobs=JOBS,
        rng=random.Random(1),
        logger=Silent(),
    ) as processor:
        processor.add_listener(listen)

        async def cancel_later(job_id: str, after: float) -> None:
            await trio.sleep(after)
            before = (await processor.get(job_id)).status
            try:
                answer = await processor.cancel(job_id)
            except JobAlreadyFinished:
                assert before.is_final
                cancel_late.add(job_id)
            else:
                cancel_ok.add(job_id)
                cancelled_while[before] += 1
                running = before is JobStatus.RUNNING
                assert answer.status is (JobStatus.RUNNING if running else JobStatus.CANCELLED)

        async def submitter(index: int, count: int, nursery: trio.Nursery) -> None:
            nonlocal refusals, duplicates
            rng = random.Random(1000 + index)
            for n in range(count):
                plan = make_plan(rng)
                priority = rng.choice(list(Priority))
                while True:
                    try:
                        job = await processor.submit(
                            "work",
                            {"plan": plan["plan"]},
                            priority=priority,
                            retries=plan["retries"],
                            job_id=f"s{index}-{n}" if rng.random() < 0.02 else None,
                        )
                    except QueueFull:
                        refusals += 1
                        await trio.sleep(rng.uniform(0.5, 1.5))
                    else:
                        break
                assert job.id not in plans
                plans[job.id] = plan
                if job.id.startswith("s"):  # submit the same id again: no duplicate
                    (again,) = await processor.submit_many(
                        [JobRequest.build("work", {"plan": []}, job_id=job.id)]
                    )
                    assert not again.created
                    assert again.job.payload == {"plan": plan["plan"]}
                    duplicates += 1
                if rng.random() < 0.03:
                    nursery.start_soon(cancel_later, job.id, rng.uniform(0, 3))
                if rng.random() < 0.1:
                    await trio.lowlevel.checkpoint()

        per_submitter = JOBS // SUBMITTERS
        async with trio.open_nursery() as nursery:
            for index in range(SUBMITTERS):
                nursery.start_soon(submitter, index, per_submitter, nursery)
        with trio.fail_after(24 * 3600):
            for job_id in plans:
                await processor.wait(job_id)
        stats = await processor.stats()
        records = {job_id: await processor.get(job_id) for job_id in plans}

    # Every job submitted once, every one final exactly once, with the right record.
    assert len(plans) == JOBS
    assert refusals > 0  # the admission bound was reached and answered, never waited on
    assert duplicates > 0
    assert set(events) == set(plans)
    truth: Counter[str] = Counter()
    retried = started = 0
    for job_id, plan in plans.items():
        seen = events[job_id]
        assert seen[0] == "submitted"
        assert seen.count("submitted") == 1
        assert sum(seen.count(e) for e in FINAL) == 1, (job_id, seen)
        assert seen[-1] in FINAL
        record = records[job_id]
        assert record.status.value == seen[-1]
        assert record.attempts == finals[job_id].attempts == seen.count("started")
        started += seen.count("started")
        retried += seen.count("retried")
        truth[record.status.value] += 1
        if job_id in cancel_ok:
            assert record.status is JobStatus.CANCELLED
            assert seen.count("retried") in (record.attempts - 1, record.attempts)
            continue
        status, attempts, error_type, message = expected_outcome(plan)
        assert (record.status, record.attempts) == (status, attempts), (job_id, plan, seen)
        assert seen.count("retried") == attempts - 1
        if status is JobStatus.COMPLETED:
            assert record.result == {"attempt": attempts}
        else:
            assert record.error is not None
            assert record.error.type == error_type
            assert message is not None
            assert record.error.message.startswith(message)

    assert cancel_late
    # Cancellations hit jobs in each unfinished state.
    assert set(cancelled_while) == {JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RUNNING}
    assert truth["cancelled"] == len(cancel_ok)
    assert truth["completed"] > JOBS // 2
    assert truth["failed"] > 0

    # The counters are the truth.
    assert stats.submitted == JOBS
    assert stats.completed == truth["completed"]
    assert stats.failed == truth["failed"]
    assert stats.cancelled == truth["cancelled"]
    assert stats.retried == retried
    assert (stats.running, stats.queue_size, stats.scheduled) == (0, 0, 0)
    assert sum(w.processed for w in stats.workers) == started
    assert sum(w.succeeded for w in stats.workers) == truth["completed"]
    assert sum(w.failed for w in stats.workers) == started - truth["completed"]
    assert stats.run_time.count == stats.queue_wait.count == 4096
    assert processor.abandoned == []
