"""Group commit: the SQLite broker's writes, batched, committed from a thread.

Tasks :meth:`Journal.put` jobs into the current batch. When a commit starts, it encodes each
job of the batch as it is then (in the event loop: the jobs are live objects), and a thread
writes them all with one SQL statement; jobs put meanwhile go into the next batch. One commit
runs at a time, so the one connection is used by one thread at a time. A job put several times
before a commit (started, then finished) is encoded and written once.

Two kinds of writers:

- Submissions wait: :meth:`Journal.commit` returns once their rows are committed (or why they
  could not be). The task that finds no commit running writes the batch itself, and everyone
  who put a row meanwhile waits for that same commit: concurrent submissions share commits.
  There is no writer task to outlive, so a commit never waits for a task that was cancelled.
- Everything else (starts, outcomes, cancellations, jobs handed back) is written behind:
  :meth:`Journal.flush_forever` commits it soon after it is put, in batches as large as the
  load makes them. If a commit fails, these rows go back into the next batch and are retried
  every :data:`RETRY_INTERVAL`; a failed submission's rows are dropped (its caller was told).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from functools import partial
from typing import NamedTuple, TypeVar

import outcome
import trio

from .._job import Job, job_to_record
from ._sqlite_store import JobStore, Retention, StoreError

#: Seconds between two passes of retention over the journal (deleting expired jobs).
RETENTION_INTERVAL = 1.0
#: Seconds between attempts to write rows behind while the journal cannot be written.
RETRY_INTERVAL = 1.0
#: Seconds rows written behind may wait for their commit: the longer, the larger the batches
#: (a job that starts and finishes meanwhile is written once), and the more jobs run again
#: after a crash because their outcome was not written yet.
FLUSH_DELAY = 0.01

T = TypeVar("T")

_encode = json.JSONEncoder(separators=(",", ":")).encode
_quote = json.encoder.encode_basestring_ascii


def encode_record(job: Job) -> bytes:
    """The stored form of ``job`` as it is now: :func:`job_to_record` as JSON, UTF-8."""
    record = job_to_record(job)
    try:
        return _encode(record).encode()
    except (TypeError, ValueError):
        # Results and payloads are checked for JSON on their way in; progress is not.
        record["progress"] = repr(record["progress"])
        return _encode(record).encode()


async def in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread and return its result; not cancellable (the caller shields).

    Like :func:`trio.to_thread.run_sync` without its capacity limiter, whose acquisition is a
    schedule point: on a busy loop that costs a whole round of every runnable task (milliseconds)
    before the thread even starts, on every commit. Commits are one at a time anyway
    (:meth:`Journal.commit`), so the one connection is never used by two threads at once.
    """
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    results: list[outcome.Outcome[T]] = []

    def deliver(result: outcome.Outcome[T]) -> None:
        # In the thread: hand the result back to the event loop.
        def wake() -> None:
            results.append(result)
            done.set()

        token.run_sync_soon(wake)

    trio.lowlevel.start_thread_soon(fn, deliver, name="trio-tasks sqlite journal")
    await done.wait()
    return results[0].unwrap()


class _Row(NamedTuple):
    """A job encoded for :meth:`JobStore.write`, but for its place in the batch: the start
    of its row (``[n,id,status,`` in JSON), when it finished (JSON), and its record."""

    head: str
    finished: str
    record: bytes


class _Batch:
    """The jobs to write with one commit, by id: live jobs, encoded when the commit starts,
    or rows encoded already (submitted jobs, which do not change until committed)."""

    __slots__ = ("done", "error", "jobs", "new")

    def __init__(self) -> None:
        self.jobs: dict[str, Job | _Row] = {}
        #: Ids of submitted jobs: their rows are not retried if the commit fails.
        self.new: set[str] = set()
        self.done = trio.Event()
        self.error: str | None = None

    def retry(self, failed: _Batch) -> None:
        """Take back the jobs of ``failed`` that were written behind (ours are newer)."""
        for job_id, job in failed.jobs.items():
            if job_id not in failed.new:
                self.jobs.setdefault(job_id, job)


class Journal:
    """Batches writes to ``store`` and commits them from a thread, one commit at a time.

    ``retention(now)`` says what to delete; it is applied at most once per
    :data:`RETENTION_INTERVAL`, after a commit. ``rows`` maps the id of every job in the store
    to its row number; ``last_queued`` is the highest queue sequence number there. Set
    :attr:`clock` to the processor's wall clock once it runs.
    """

    def __init__(
        self,
        store: JobStore,
        retention: Callable[[float], Retention],
        rows: dict[str, int],
        last_queued: int,
    ) -> None:
        self.store = store
        self.clock: Callable[[], float] = time.time
        #: Why the last commit failed (the disk is full…), ``None`` once one succeeds.
        self.error: str | None = None
        self._retention = retention
        self._retained_at = -math.inf
        self._rows = rows
        self._next_row = itertools.count(max(rows.values(), default=0) + 1)
        self._queued = itertools.count(last_queued + 1)
        self._batch = _Batch()
        self._writing: trio.Event | None = None
        self._dirty = trio.Event()
        self._closed = False

    def _row(self, job: Job) -> _Row:
        """Encode ``job`` as it is now (numbering it if it has no row yet)."""
        rows = self._rows
        n = rows.get(job.id)
        if n is None:
            n = rows[job.id] = next(self._next_row)
        status = job.status
        finished = job.completed_at if status.is_final else None
        return _Row(
            f'[{n},{_quote(job.id)},"{status.value}",',
            "null" if finished is None else repr(finished),
            encode_record(job),
        )

    def _pack(self, rows: Iterable[Job | _Row]) -> tuple[str, bytes]:
        """The arguments of :meth:`JobStore.write` for ``rows`` (live jobs encoded now), each
        with the next queue sequence number."""
        meta: list[str] = []
        records: list[bytes] = []
        queued = self._queued
        offset = 1
        for row in rows:
            if not isinstance(row, _Row):
                row = self._row(row)
            size = len(row.record)
            meta.append(f"{row.head}{next(queued)},{row.finished},{offset},{size}]")
            records.append(row.record)
            offset += size
        return "[" + ",".join(meta) + "]", b"".join(records)

    def write_now(self, jobs: Sequence[Job]) -> None:
        """Write ``jobs`` at once, in the calling thread (at start-up, before Trio runs).

        Raises:
            StoreError: the write failed.
        """
        if jobs:
            error = self.store.write(*self._pack(jobs), None).error
            if error is not None:
                raise StoreError(error)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: nothing more will be written."""
        return self._closed

    def put(self, job: Job) -> None:
        """Write ``job`` with the next commit, as it is when that commit starts.

        Writing the live job rather than a copy is what makes this cheap: a job that starts
        and finishes before the next commit is encoded once. It is also correct, because every
        state of a job in memory is one the journal may hold.
        """
        jobs = self._batch.jobs
        # Moved to the end: rows are numbered in this order, which is the queue order.
        jobs.pop(job.id, None)
        jobs[job.id] = job
        self._dirty.set()

    def put_new(self, jobs: Collection[Job]) -> None:
        """Write submitted ``jobs`` with the next commit (not retried if it fails)."""
        batch = self._batch
        for job in jobs:
            # Encoded now, while other tasks may still be waiting for the previous commit.
            batch.jobs[job.id] = self._row(job)
            batch.new.add(job.id)

    async def commit(self) -> str | None:
        """Wait until everything put so far is committed (shielded from cancellation: the
        write happens either way). Returns ``None``, or why the commit failed."""
        batch = self._batch
        with trio.CancelScope(shield=True):
            while not batch.done.is_set():
                writing = self._writing
                if writing is not None:
                    await writing.wait()
                else:
                    await self._write()
        return batch.error

    async def _write(self) -> None:
        self._writing = writing = trio.Event()
        batch = self._batch
        try:
            batch = self._batch
            self._batch = _Batch()
            retention = None
            now = self.clock()
            if now - self._retained_at >= RETENTION_INTERVAL:
                self._retained_at = now
                retention = self._retention(now)
            rows, records = self._pack(batch.jobs.values())
            if rows != "[]" or retention is not None:
                written = await in_thread(partial(self.store.write, rows, records, retention))
                batch.error = self.error = written.error
                for job_id, n in written.deleted:
                    # Forgotten by retention; not if its id came back (a new job) meanwhile.
                    if self._rows.get(job_id) == n and job_id not in self._batch.jobs:
                        del self._rows[job_id]
        except BaseException as exc:
            batch.error = self.error = f"journal write failed: {exc!r}"
            raise
        finally:
            if batch.error is not None:
                self._batch.retry(batch)
                for job_id in batch.new:
                    self._rows.pop(job_id, None)
                # Probe again soon with a real write (retention), so that the error clears by
                # itself once the disk is back, even on a node that gets no new work.
                self._retained_at = -math.inf
                self._dirty.set()
            batch.done.set()
            self._writing = None
            writing.set()

    async def flush_forever(self) -> None:
        """Commit the rows written behind soon after they are put; retry while commits fail."""
        while True:
            await self._dirty.wait()
            await trio.sleep(FLUSH_DELAY)
            self._dirty = trio.Event()
            if await self.commit() is not None:
                await trio.sleep(RETRY_INTERVAL)
                self._dirty.set()

    async def close(self) -> str | None:
        """Commit what is left, then close the store (checkpointed, unlocked). Returns why the
        last commit failed, if it did. Idempotent."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return None
        self._closed = True
        error = await self.commit()
        await in_thread(self.store.close)
        return error

    async def between_commits(self, fn: Callable[[JobStore], T]) -> T:
        """Run ``fn(store)`` in a thread while no commit runs (shielded: it happens either
        way), for the rare writes beside the jobs (the state of periodic jobs).

        Raises:
            StoreError: the journal is closed.
        """
        with trio.CancelScope(shield=True):
            while self._writing is not None:
                await self._writing.wait()
            if self._closed:
                raise StoreError("the job database is closed")
            self._writing = writing = trio.Event()
            try:
                result = await in_thread(partial(fn, self.store))
            finally:
                self._writing = None
                writing.set()
        return result
