"""Failed jobs you can act on (the dead-letter list), on every broker: kept for ``FAILED_TTL``
apart from completed ones, queued again under their id with ``processor.retry`` and in bulk
with ``processor.retry_failed``.

Behavioural tests in the style of ``tests/test_behaviour.py`` (``make_processor`` and
``behaviour_clock``: memory, SQLite and Redis).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing
from test_behaviour import LIMIT, MakeProcessor

from trio_tasks import (
    JobContext,
    JobNotFound,
    JobNotRetryable,
    JobStatus,
    PermanentError,
    TaskRegistry,
)
from trio_tasks._dead_letter import RETRY_MAX, parse_since
from trio_tasks._job import job_from_record, job_to_record


class Flaky:
    """``flaky`` fails permanently while :attr:`broken`, then returns ``"fixed"``."""

    def __init__(self) -> None:
        self.tasks = TaskRegistry()
        self.broken = True
        self.runs = 0
        self.tasks.register("flaky", self._flaky, retries=0)
        self.tasks.register("other", self._flaky, retries=0)

    async def _flaky(self, ctx: JobContext) -> str:
        self.runs += 1
        if self.broken:
            raise PermanentError(f"broken on run {self.runs}")
        return "fixed"


async def test_retry_requeues_a_failed_job_under_its_id_with_its_errors_kept(
    make_processor: MakeProcessor, behaviour_clock: trio.testing.MockClock | None
) -> None:
    lab = Flaky()
    async with make_processor(lab.tasks, workers=1) as processor:
        job = await processor.submit("flaky", job_id="dl-1")
        failed = await processor.wait(job.id)
        assert failed.status is JobStatus.FAILED
        assert failed.errors == []
        with trio.fail_after(LIMIT):
            again = await processor.retry(job.id)
        assert again.id == "dl-1"
        assert again.attempts == 0
        assert again.error is None
        assert [e["message"] for e in again.errors] == ["broken on run 1"]
        second = await processor.wait(job.id)
        assert second.status is JobStatus.FAILED
        assert second.attempts == 1
        lab.broken = False
        third = await processor.retry(job.id)
        assert [e["attempt"] for e in third.errors] == [1, 1]
        done = await processor.wait(job.id)
        assert done.status is JobStatus.COMPLETED
        assert done.result == "fixed"
        assert [e["type"] for e in done.errors] == ["PermanentError", "PermanentError"]
        assert all(isinstance(e["time"], str) for e in done.errors)
        assert (await processor.get(job.id)).errors == done.errors
        assert processor.counters()["requeued"] == 2


async def test_retry_refuses_unfinished_and_completed_jobs_and_unknown_ids(
    make_processor: MakeProcessor, behaviour_clock: trio.testing.MockClock | None
) -> None:
    lab = Flaky()
    lab.broken = False
    async with make_processor(lab.tasks, workers=0) as processor:
        pending = await processor.submit("flaky")
        with pytest.raises(JobNotRetryable) as info:
            await processor.retry(pending.id)
        assert info.value.status == "pending"
        with pytest.raises(JobNotFound):
            await processor.retry("no-such-job")
        # A cancelled job may be queued again.
        await processor.cancel(pending.id)
        again = await processor.retry(pending.id)
        assert again.status is JobStatus.PENDING
        assert again.errors[0]["type"] == "Cancelled"
    async with make_processor(lab.tasks, workers=1) as processor:
        job = await processor.submit("flaky")
        await processor.wait(job.id)
        with pytest.raises(JobNotRetryable) as info:
            await processor.retry(job.id)
        assert info.value.status == "completed"


async def test_retry_failed_requeues_the_matching_failed_jobs_in_bulk(
    make_processor: MakeProcessor, behaviour_clock: trio.testing.MockClock | None
) -> None:
    lab = Flaky()
    async with make_processor(lab.tasks, workers=2) as processor:
        flaky = [await processor.submit("flaky") for _ in range(3)]
        other = await processor.submit("other")
        for job in [*flaky, other]:
            await processor.wait(job.id)
        lab.broken = False
        batch = await processor.retry_failed(type="flaky", since="1h")
        assert sorted(j.id for j in batch.jobs) == sorted(j.id for j in flaky)
        assert not batch.more
        for job in flaky:
            assert (await processor.wait(job.id)).status is JobStatus.COMPLETED
        assert (await processor.get(other.id)).status is JobStatus.FAILED
        # Failed since a moment in the future: none.
        assert (await processor.retry_failed(since="2999-01-01T00:00:00Z")).jobs == ()
        batch = await processor.retry_failed()
        assert [j.id for j in batch.jobs] == [other.id]


async def test_failed_jobs_outlive_the_result_ttl_until_the_failed_ttl(
    make_processor: MakeProcessor, behaviour_clock: trio.testing.MockClock | None
) -> None:
    lab = Flaky()
    async with make_processor(lab.tasks, workers=1, result_ttl="1s", failed_ttl="1h") as processor:
        failed = await processor.submit("flaky")
        await processor.wait(failed.id)
        lab.broken = False
        done = await processor.submit("flaky")
        await processor.wait(done.id)
        await trio.sleep(1.5)  # real seconds on SQLite and Redis, virtual on memory
        with pytest.raises(JobNotFound):
            await processor.get(done.id)
        assert (await processor.get(failed.id)).status is JobStatus.FAILED
        assert [j.id for j in await processor.list_jobs(status="failed")] == [failed.id]
        if behaviour_clock is not None:  # an hour passes only in virtual time
            await trio.sleep(3600)
            with pytest.raises(JobNotFound):
                await processor.get(failed.id)


def test_records_without_errors_still_decode() -> None:
    from trio_tasks._job import Job, Priority

    record = job_to_record(Job("a", "t", Priority.NORMAL, {}, 1, 1.0, 0.0))
    del record["errors"]
    assert job_from_record(record).errors == []


def test_since_takes_a_time_or_a_duration() -> None:
    assert parse_since("1h", 10_000.0) == 6_400.0
    assert parse_since("1970-01-01T00:00:10Z", 0.0) == 10.0
    assert parse_since(None, 0.0) is None
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_since("yesterday", 0.0)
    assert RETRY_MAX == 100


def test_the_dead_letter_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parent.parent / "examples" / "dead_letter.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "failed 2 mail server unreachable",
        "dead letter: welcome-42",
        "requeued ['welcome-42']",
        "completed 1 {'sent': True} mail server unreachable",
    ]
