"""The SQLite broker in process: what survives a restart, recovery of interrupted jobs, group
commit, retention in the file, and every way the file can be unusable (issue 15).

The behaviour suite (tests/test_behaviour.py, tests/test_incidents.py) also runs on SQLite; the
crash tests on real processes are in tests/test_sqlite_e2e.py. The journal commits from a
thread, so these tests run on the real clock and sequence with events and ``processor.wait``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_tasks
from trio_tasks import JobContext, JobRequest, JobStatus, TaskRegistry
from trio_tasks._config import Config, build_config
from trio_tasks._errors import BrokerUnavailable, InvalidValue
from trio_tasks._job import Job, Priority
from trio_tasks.brokers import make_broker
from trio_tasks.brokers._base import Delivery, RecordStatus
from trio_tasks.brokers._sqlite import INTERRUPTED, SqliteBroker, parse_sqlite_url
from trio_tasks.brokers._sqlite_journal import Journal
from trio_tasks.brokers._sqlite_store import JobStore, Retention
from trio_tasks.http import create_app

LIMIT = 10


class Lab:
    """Handlers the test steers: ``record`` notes ``payload["name"]``; ``block`` waits."""

    def __init__(self) -> None:
        self.tasks = TaskRegistry()
        self.order: list[str] = []
        self.blocking = trio.Event()
        self.release = trio.Event()
        self.tasks.register("record", self._record)
        self.tasks.register("block", self._block)

    async def _record(self, ctx: JobContext) -> str:
        name = str(ctx.payload["name"])
        self.order.append(name)
        return name

    async def _block(self, ctx: JobContext) -> str:
        self.blocking.set()
        await self.release.wait()
        return "released"


@asynccontextmanager
async def node(
    path: Path, lab: Lab | None = None, **settings: Any
) -> AsyncIterator[trio_tasks.Processor]:
    """A processor on the journal ``path``; leaving the block stops it gracefully."""
    settings.setdefault("workers", 1)
    registry = (lab or Lab()).tasks
    async with trio_tasks.open_processor(registry, broker=f"sqlite:///{path}", **settings) as p:
        yield p


async def eventually(predicate: Any) -> None:
    """Wait until ``predicate()`` holds (the journal commits from a thread, on the real clock)."""
    for _ in range(1000):
        if predicate():
            return
        await trio.sleep(0.01)
    raise AssertionError("the condition never held")


def rows(path: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every row of the journal (read by a connection of our own): id -> (status, record)."""
    with sqlite3.connect(path) as connection:
        found = connection.execute("SELECT id, status, record FROM jobs").fetchall()
    connection.close()
    return {job_id: (status, json.loads(record)) for job_id, status, record in found}


def write_rows(path: Path, *jobs: Job) -> None:
    """Write ``jobs`` into the journal as the broker would (the file must not be open)."""
    store = JobStore(path)
    try:
        Journal(store, lambda now: Retention(0, 0, 1000, 10**9), {}, 0).write_now(jobs)
    finally:
        store.close()


def a_job(job_id: str, **fields: Any) -> Job:
    values: dict[str, Any] = {
        "id": job_id,
        "type": "record",
        "priority": Priority.NORMAL,
        "payload": {"name": job_id},
        "max_attempts": 3,
        "timeout": 60.0,
        "created_at": 1_700_000_000.0,
    }
    values.update(fields)
    return Job(**values)


# -- what survives a restart -----------------------------------------------------------------


async def test_queued_jobs_survive_a_graceful_stop_in_their_order(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    with trio.fail_after(LIMIT):
        async with node(db, workers=0) as first:
            ids = {}
            for name, priority in [("n1", "normal"), ("l1", "low"), ("u1", "urgent")]:
                ids[name] = (await first.submit("record", {"name": name}, priority=priority)).id
            await first.submit("record", {"name": "n2"})
            await first.submit("record", {"name": "u2"}, priority="urgent")
            later = await first.submit("record", {"name": "later"}, delay="1h")
        # Nothing is abandoned: the jobs wait in the file for the next start.
        assert first.abandoned == []
        lab = Lab()
        async with node(db, lab) as second:
            kept = await second.get(later.id)
            assert kept.status is JobStatus.SCHEDULED
            assert kept.run_at == later.run_at
            # The lowest priority runs last.
            await second.wait(ids["l1"])
            stats = await second.stats()
            assert stats.submitted == 0  # this node's own counter; the jobs came from the file
    assert lab.order == ["u1", "u2", "n1", "n2", "l1"]


async def test_results_and_failures_are_kept_across_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    tasks = TaskRegistry()

    @tasks.task("add")
    async def add(ctx: JobContext) -> int:
        return int(ctx.payload["a"]) + 1

    @tasks.task("boom", retries=0)
    async def boom(ctx: JobContext) -> None:
        raise ValueError("no")

    with trio.fail_after(LIMIT):
        async with trio_tasks.open_processor(tasks, broker=f"sqlite:///{db}") as first:
            done = await first.wait((await first.submit("add", {"a": 41})).id)
            failed = await first.wait((await first.submit("boom")).id)
        async with trio_tasks.open_processor(tasks, broker=f"sqlite:///{db}") as second:
            again = await second.get(done.id)
            broken = await second.get(failed.id)
            listed = await second.list_jobs(limit=10)
    assert (again.status, again.result, again.attempts) == (JobStatus.COMPLETED, 42, 1)
    assert again.completed_at == done.completed_at
    assert broken.status is JobStatus.FAILED
    assert broken.error is not None
    assert broken.error.message == "no"
    # Newest first, as before the restart.
    assert [job.id for job in listed] == [failed.id, done.id]


async def test_a_submission_returns_only_once_its_row_is_committed(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    with trio.fail_after(LIMIT):
        async with node(db, workers=0, max_concurrency=1000) as processor:
            job = await processor.submit("record", {"name": "x"})
            # Another connection sees it at once: it is in the file, not only in memory.
            assert rows(db)[job.id][0] == "pending"
            batch = await processor.submit_many(
                [JobRequest(type="record", payload={"name": str(i)}) for i in range(100)]
            )
            stored = rows(db)
            assert all(stored[a.job.id][0] == "pending" for a in batch)


async def test_concurrent_submissions_share_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "jobs.db"
    commits: list[int] = []
    real_write = JobStore.write

    def counting_write(self: JobStore, rows: str, records: bytes, retention: Any) -> Any:
        commits.append(len(json.loads(rows)))
        return real_write(self, rows, records, retention)

    monkeypatch.setattr(JobStore, "write", counting_write)
    with trio.fail_after(LIMIT):
        async with node(db, workers=0, max_concurrency=1000) as processor:
            commits.clear()
            async with trio.open_nursery() as nursery:
                for i in range(200):
                    nursery.start_soon(processor.submit, "record", {"name": str(i)})
            assert len(rows(db)) == 200
    # 200 submissions, each acknowledged after its commit, in a handful of commits.
    assert sum(commits) >= 200
    assert len(commits) <= 20, commits


# -- recovery --------------------------------------------------------------------------------


async def test_a_job_running_when_the_process_died_counts_the_attempt_and_runs_again(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    # The journal as a killed process left it: one job mid-attempt 1, one mid-attempt 3 of 3.
    write_rows(
        db,
        a_job("again", status=JobStatus.RUNNING, attempts=1, started_at=1_700_000_001.0),
        a_job("spent", status=JobStatus.RUNNING, attempts=3, started_at=1_700_000_001.0),
    )
    lab = Lab()
    with trio.fail_after(LIMIT):
        async with node(db, lab, retry_delay=0) as processor:
            again = await processor.wait("again")
            spent = await processor.get("spent")
    assert (again.status, again.attempts, again.result) == (JobStatus.COMPLETED, 2, "again")
    # The interrupted attempt was the last one: the job fails, saying why.
    assert (spent.status, spent.attempts) == (JobStatus.FAILED, 3)
    assert spent.error is not None
    assert spent.error.type == INTERRUPTED
    assert "attempt 3" in spent.error.message
    assert lab.order == ["again"]


async def test_a_record_that_does_not_decode_becomes_a_failed_job(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    write_rows(db, a_job("good"), a_job("bad"))
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE jobs SET record = '{\"v\": 1, \"id\": 7}' WHERE id = 'bad'")
        connection.execute(
            "INSERT INTO jobs VALUES (99, 'junk', 'pending', 9, NULL, 8, 'not json')"
        )
    connection.close()
    lab = Lab()
    with trio.fail_after(LIMIT):
        async with node(db, lab) as processor:
            good = await processor.wait("good")
            bad = await processor.get("bad")
            junk = await processor.get("junk")
    assert good.status is JobStatus.COMPLETED
    for job in (bad, junk):
        assert job.status is JobStatus.FAILED
        assert job.error is not None
        assert job.error.type == "CorruptRecord"
    assert junk.error is not None
    assert "not JSON" in junk.error.message
    # Quarantined in the file too: the next start reads a valid failed job.
    status, record = rows(db)["junk"]
    assert (status, record["status"], record["error"]["type"]) == (
        "failed",
        "failed",
        "CorruptRecord",
    )


# -- retention -------------------------------------------------------------------------------


async def test_the_file_keeps_at_most_result_max_jobs_finished_jobs(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    with trio.fail_after(LIMIT):
        async with node(db, workers=2, result_max_jobs=5) as processor:
            for i in range(30):
                await processor.wait((await processor.submit("record", {"name": str(i)})).id)
            # Retention runs with the commits, at most once a second.
            await trio.sleep(1.1)
            await processor.wait((await processor.submit("record", {"name": "last"})).id)
    stored = rows(db)
    assert 5 <= len(stored) <= 6
    assert "last" in {record["payload"]["name"] for _, record in stored.values()}


async def test_expired_jobs_are_not_reloaded(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    old = 1_000_000_000.0
    write_rows(
        db,
        a_job("expired", status=JobStatus.COMPLETED, completed_at=old),
        a_job("old-failure", status=JobStatus.FAILED, completed_at=old),
        a_job("queued"),
    )
    with trio.fail_after(LIMIT):
        async with node(db, workers=0) as processor:
            assert await processor.broker.get("expired") is None
            assert await processor.broker.get("old-failure") is None
            assert (await processor.get("queued")).status is JobStatus.PENDING
    assert set(rows(db)) == {"queued"}


# -- the file unusable -------------------------------------------------------------------------


def _broker(url: str) -> Any:
    return make_broker(url, Config())


def test_a_second_process_on_the_same_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    first = JobStore(db)
    try:
        with pytest.raises(InvalidValue, match=r"in use by another process \(pid \d+\)"):
            _broker(f"sqlite:///{db}")
    finally:
        first.close()
    # Released with its owner.
    JobStore(db).close()


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    db.write_bytes(b"this is not an SQLite database, it is a text file\n" * 100)
    with pytest.raises(InvalidValue, match="not an SQLite database"):
        _broker(f"sqlite:///{db}")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE users (name TEXT)")
    connection.close()
    with pytest.raises(InvalidValue, match="not a trio-tasks job database"):
        _broker(f"sqlite:///{other}")


def test_a_damaged_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    write_rows(db, *(a_job(f"job-{i}", payload={"pad": "x" * 2000}) for i in range(50)))
    data = bytearray(db.read_bytes())
    data[8192:12288] = b"\xff" * 4096  # a page in the middle
    db.write_bytes(bytes(data))
    with pytest.raises(InvalidValue, match=str(db)):
        _broker(f"sqlite:///{db}")


def test_a_directory_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    # /sys is read-only, for root too.
    with pytest.raises(InvalidValue, match=r"cannot use /sys/jobs.db: cannot create its lock file"):
        _broker("sqlite:////sys/jobs.db")
    with pytest.raises(InvalidValue, match="No such file or directory"):
        _broker(f"sqlite:///{tmp_path}/missing/jobs.db")


def test_sqlite_urls() -> None:
    assert parse_sqlite_url("sqlite:///jobs.db") == ("jobs.db", "normal")
    assert parse_sqlite_url("sqlite:////var/lib/jobs.db") == ("/var/lib/jobs.db", "normal")
    assert parse_sqlite_url("sqlite:///data/j.db?synchronous=FULL") == ("data/j.db", "full")
    for bad in (
        "sqlite://jobs.db",
        "sqlite:///",
        "sqlite:///j.db?mode=ro",
        "sqlite:///j?synchronous=off",
    ):
        with pytest.raises(InvalidValue):
            parse_sqlite_url(bad)
    assert build_config(broker_url="sqlite:///jobs.db").broker_url == "sqlite:///jobs.db"


async def test_a_full_disk_is_503_for_submissions_and_unhealthy_until_it_recovers(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    lab = Lab()
    with trio.fail_after(LIMIT):
        async with node(db, lab) as processor:
            broker = processor.broker
            assert isinstance(broker, SqliteBroker)
            client = create_app(processor).test_client()
            running = await processor.submit("block")
            await lab.blocking.wait()
            # SQLite's own "database or disk is full": no page may be added to the file.
            connection = broker._journal.store.connection
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            connection.execute(f"PRAGMA max_page_count = {pages}")
            pad = {"name": "x", "pad": "y" * 50_000}
            response = await client.post("/jobs", json={"type": "record", "payload": pad})
            answer = await response.get_json()
            assert response.status_code == 503
            assert "full" in answer["error"]
            assert "full" in str(broker.health())
            health = await client.get("/health")
            assert health.status_code == 503
            # An outcome meanwhile is not recorded: the job will run again.
            lab.release.set()
            await eventually(lambda: broker._jobs[running.id].status is JobStatus.SCHEDULED)
            assert (await processor.stats()).completed == 0
            # Space again: the next commit succeeds and the node is healthy.
            connection.execute("PRAGMA max_page_count = 1073741823")
            ok = await processor.submit("record", {"name": "after"})
            assert broker.health() is None
            assert (await processor.wait(ok.id)).status is JobStatus.COMPLETED
            assert (await client.get("/health")).status_code == 200


async def test_an_outcome_is_not_recorded_while_the_journal_fails(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    lab = Lab()
    with trio.fail_after(LIMIT):
        async with node(db, lab) as processor:
            broker = processor.broker
            assert isinstance(broker, SqliteBroker)
            job = await processor.submit("block")
            await lab.blocking.wait()
            delivery_job = broker._jobs[job.id]
            broker._journal.error = "cannot write: disk full"
            recording = await broker.complete(Delivery(delivery_job), "done")
            assert recording.status is RecordStatus.NOT_RECORDED
            assert recording.job.status is JobStatus.SCHEDULED
            with pytest.raises(BrokerUnavailable):
                await processor.cancel(job.id)
            broker._journal.error = None
            lab.release.set()


def test_the_lock_file_names_the_owner(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    store = JobStore(db)
    try:
        assert (tmp_path / "jobs.db.lock").read_text().strip() == str(os.getpid())
    finally:
        store.close()
