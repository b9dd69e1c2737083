"""The SQLite broker: the memory broker's channels for dispatch, an SQLite journal for
durability (``BROKER_URL=sqlite:///jobs.db``).

Every change of a job is written to the journal (:mod:`._sqlite_journal`, group commit;
:mod:`._sqlite_store`, the file). A submission is admitted only once its rows are committed;
starts, outcomes and cancellations are written behind, within milliseconds. Reads (``get``,
``list_jobs``, ``wait``, ``counts``) never touch the file. On start the journal is read back:
queued and scheduled jobs return to their queues in their order, jobs that were running count
that attempt as interrupted and run again by the usual retry rules.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import trio

from .._backoff import backoff_delay
from .._errors import BrokerUnavailable, InvalidValue
from .._job import Job, JobError, JobStatus, job_from_record, salvage_record, snapshot
from .._log import library_logger
from ._base import Admission, BrokerHost, CancelOutcome, Delivery, Recording, RecordStatus
from ._memory import MemoryBroker
from ._sqlite_journal import Journal
from ._sqlite_schedules import load_schedules, save_schedule
from ._sqlite_store import SYNCHRONOUS, JobStore, Retention, StoredJob, StoreError

#: Seconds before a job whose outcome could not be recorded (the disk is full…) runs again.
UNRECORDED_RETRY = 5.0
#: ``JobError.type`` of the attempt a job was running when its node stopped without handing it
#: back (killed, crashed, the machine lost power).
INTERRUPTED = "Interrupted"

_PENDING, _SCHEDULED, _RUNNING = JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RUNNING


def parse_sqlite_url(url: str) -> tuple[str, str]:
    """Return the file and the ``synchronous`` setting of ``sqlite:///path?synchronous=...``.

    As in SQLAlchemy, what follows ``sqlite:///`` is the path: ``sqlite:///jobs.db`` is
    relative to the working directory, ``sqlite:////var/lib/jobs.db`` absolute.

    Raises:
        InvalidValue: not of that form, or an unknown parameter.
    """
    parts = urlsplit(url)
    expected = "expected sqlite:///relative/path.db or sqlite:////absolute/path.db"
    if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/"):
        raise InvalidValue(f"malformed SQLite URL {url!r}: {expected}")
    path = unquote(parts.path[1:])
    if not path:
        raise InvalidValue(f"malformed SQLite URL {url!r}: no file named; {expected}")
    synchronous = "normal"
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        if name != "synchronous" or values[-1].lower() not in SYNCHRONOUS:
            raise InvalidValue(
                f"SQLite URL parameter {name}={values[-1]!r} is not supported; "
                f"expected synchronous={'|'.join(SYNCHRONOUS)}"
            )
        synchronous = values[-1].lower()
    return path, synchronous


class SqliteBroker(MemoryBroker):
    """Queues in memory, every job journaled in an SQLite file: queued jobs survive restarts
    and crashes of the process. One process owns a file at a time.

    The file is opened, locked, checked and read by the constructor (at start-up, before the
    event loop is busy). ``synchronous="full"`` also survives a power loss, at the cost of one
    disk flush per commit.

    Raises:
        StoreError: the file is in use by another process, corrupt, not a job database,
            unreadable, or cannot be written (read-only directory, full disk).
    """

    # Recording an outcome waits for its journal write: the worker shields it.
    records_without_checkpoint = False

    def __init__(
        self,
        path: str,
        *,
        max_concurrency: int,
        result_ttl: float,
        result_max_jobs: int,
        result_max_bytes: int = 256 * 1_048_576,
        failed_ttl: float = 0.0,
        retry_delay: float = 1.0,
        retry_max_delay: float = 300.0,
        synchronous: str = "normal",
        logger: Any = None,
        rng: random.Random | None = None,
    ) -> None:
        self._log: Any = logger if logger is not None else library_logger()
        self._retry = (retry_delay, retry_max_delay, rng or random.Random())
        self._limits = (result_ttl, max(result_ttl, failed_ttl), result_max_jobs, result_max_bytes)
        store = JobStore(path, synchronous=synchronous)
        try:
            stored, last_queued = store.load(self._retention(time.time()))
            # The last row of an id wins; earlier ones (left by hand edits) are dropped.
            latest = {row.id: row for row in stored}
            stale = [row.n for row in stored if latest[row.id] is not row]
            if stale:
                store.drop(stale)
                stored = list(latest.values())
            rows = {row.id: row.n for row in stored}
            self._journal = Journal(store, self._retention, rows, last_queued)
            jobs, repaired = self._recover(stored, time.time())
            self._journal.write_now(repaired)
        except BaseException:
            store.close()
            raise
        unfinished = [job for job in jobs if not job.status.is_final]
        # Channels hold every reloaded job even if the bound was lowered since; new
        # submissions wait until the backlog is under the bound again.
        super().__init__(
            max_concurrency=max(max_concurrency, len(unfinished)),
            result_ttl=result_ttl,
            result_max_jobs=result_max_jobs,
            result_max_bytes=result_max_bytes,
            failed_ttl=failed_ttl,
        )
        self.max_concurrency = max_concurrency
        self._committing: dict[str, Job] = {}
        self._restore(jobs, unfinished, {s.id: s.queued for s in stored})
        self._schedules = load_schedules(store.connection)

    def _retention(self, now: float) -> Retention:
        ttl, failed_ttl, max_jobs, max_bytes = self._limits
        return Retention(now - ttl, now - failed_ttl, max_jobs, max_bytes)

    # -- start-up --------------------------------------------------------------------------

    def _recover(self, stored: Sequence[StoredJob], now: float) -> tuple[list[Job], list[Job]]:
        """Decode every row; return the jobs, and those whose rows must be rewritten: records
        that do not decode (now failed jobs) and jobs that were running (interrupted)."""
        jobs: list[Job] = []
        repaired: list[Job] = []
        corrupt: list[str] = []
        interrupted: list[str] = []
        for row in stored:
            decoded = _decode(row)
            if isinstance(decoded, _Problem):
                job = salvage_record(decoded.record, row.id, decoded.text)
                corrupt.append(row.id)
                repaired.append(job)
            else:
                job = decoded
            if job.status is _RUNNING:
                interrupted.append(job.id)
                self._interrupt(job, now)
                repaired.append(job)
            elif job.status.is_final and job.completed_at is None:
                job.completed_at = now
            jobs.append(job)
        if corrupt:
            self._log.warning(
                "corrupt job record quarantined: the job ends failed",
                count=len(corrupt),
                first_ids=corrupt[:10],
            )
        if interrupted:
            self._log.warning(
                "jobs interrupted by the last stop: the attempt counts, the usual retries follow",
                count=len(interrupted),
                first_ids=interrupted[:10],
            )
        return jobs, repaired

    def _interrupt(self, job: Job, now: float) -> None:
        """A job that was running when the process stopped without handing it back."""
        job.error = JobError(
            f"interrupted: the node stopped during attempt {job.attempts}", INTERRUPTED
        )
        if job.attempts >= job.max_attempts:
            job.status = JobStatus.FAILED
            job.completed_at = now
        else:
            base, cap, rng = self._retry
            job.status = _SCHEDULED
            job.run_at = now + backoff_delay(job.attempts, base, cap, rng)

    def _restore(self, jobs: list[Job], unfinished: list[Job], queued: dict[str, int]) -> None:
        # Records in the order jobs were submitted (lists are newest first), queues in the
        # order jobs entered them, finished jobs in the order they finished (retention).
        for job in jobs:
            self._jobs[job.id] = job
        unfinished.sort(key=lambda job: queued.get(job.id, 0))
        self._unfinished += len(unfinished)
        self._place(unfinished)
        finished = sorted((j for j in jobs if j.status.is_final), key=lambda j: j.completed_at or 0)
        for job in finished:
            self._restore_finished(job)
        self._log.info(
            "job database opened",
            path=str(self._journal.store.path),
            queued=sum(self._pending.values()),
            scheduled=self._scheduled,
            finished=len(finished),
        )

    async def run(
        self,
        host: BrokerHost,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Promote due scheduled jobs and commit unawaited journal rows until cancelled."""
        self._journal.clock = host.clock.now
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._journal.flush_forever)
            await nursery.start(super().run, host)
            task_status.started()

    # -- submission ------------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[Admission]:
        """Admit all of ``jobs`` or none, once their rows are committed.

        Raises:
            QueueFull: the admission bound is reached.
            BrokerUnavailable: the journal cannot be written (nothing was admitted).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        answers, new = self._admit(jobs)
        if new:
            committing = self._committing
            error: str | None = "not written"
            try:
                for job in new:
                    committing[job.id] = job
                self._journal.put_new(new)
                error = await self._journal.commit()
            finally:
                for job in new:
                    del committing[job.id]
                if error is not None:
                    self._unfinished -= len(new)
            if error is not None:
                raise BrokerUnavailable(error)
            self._place(new)
        return [Admission(snapshot(job), created) for job, created in answers]

    def _known(self, job_id: str) -> Job | None:
        return self._live(job_id) or self._committing.get(job_id)

    # -- workers ---------------------------------------------------------------------------
    #
    # Starts and outcomes are written behind: the worker goes on at once and the journal commits
    # them within a few milliseconds, many per commit. A job whose outcome was not committed yet
    # when the process died is found ``running`` at the next start: its attempt counts as
    # interrupted and it runs again (at-least-once, as on Redis). While the journal cannot be
    # written, outcomes are not recorded: the job runs again later.

    async def fetch(self, worker_id: str) -> Delivery:
        """Wait for a job; its start is journaled behind."""
        delivery = await super().fetch(worker_id)
        self._journal.put(delivery.job)
        return delivery

    async def complete(self, delivery: Delivery, result: Any) -> Recording:
        """Record success; ``NOT_RECORDED`` while the journal cannot be written."""
        if self._journal.error is not None:
            return self._not_recorded(delivery)
        return self._journaled(await super().complete(delivery, result))

    async def fail(self, delivery: Delivery, error: JobError, retry_at: float | None) -> Recording:
        """Record a failed attempt (retry scheduled, or failed)."""
        if self._journal.error is not None:
            return self._not_recorded(delivery)
        return self._journaled(await super().fail(delivery, error, retry_at))

    async def finish_cancelled(self, delivery: Delivery) -> Recording:
        """Record a cancelled running job."""
        if self._journal.error is not None:
            return self._not_recorded(delivery)
        return self._journaled(await super().finish_cancelled(delivery))

    def _journaled(self, recording: Recording) -> Recording:
        self._journal.put(recording.job)
        return recording

    def _not_recorded(self, delivery: Delivery) -> Recording:
        # Nothing changes: the job runs again a little later, as after a lost lease on Redis,
        # and the node answers /health unhealthy meanwhile.
        job = delivery.job
        self._stop_running(job)
        self._schedule(job, self._now() + UNRECORDED_RETRY)
        return Recording(RecordStatus.NOT_RECORDED, job)

    async def release(self, delivery: Delivery) -> None:
        """Queue an interrupted job again; it is journaled ``pending`` for the next start."""
        await super().release(delivery)
        self._journal.put(delivery.job)

    # -- cancellation and retry ------------------------------------------------------------

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Cancel a job (see :meth:`Broker.cancel`); journaled behind.

        Raises:
            BrokerUnavailable: the journal cannot be written (nothing changed).
        """
        if self._journal.closed:
            # A cancellation answered now would never reach the file: refuse it.
            await trio.lowlevel.checkpoint()
            raise BrokerUnavailable("the SQLite broker is stopped")
        if self._journal.error is not None:
            await trio.lowlevel.checkpoint()
            raise BrokerUnavailable(self._journal.error)
        outcome = await super().cancel(job_id)
        if not outcome.running:
            self._journal.put(outcome.job)
        return outcome

    async def retry(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again (see :meth:`Broker.retry`) once its row is
        committed, as a submission is.

        Raises:
            BrokerUnavailable: the journal cannot be written (nothing changed).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._journal.error is not None:
            await trio.lowlevel.checkpoint()
            raise BrokerUnavailable(self._journal.error)
        job = self._requeue(job_id)
        queued = snapshot(job)  # as queued: a worker may take it while the row is written
        self._journal.put(job)
        error = await self._journal.commit()
        if error is not None:
            # Queued already (a worker may hold it): the journal retries the row, as it does
            # for outcomes; the caller is told the write is late.
            self._log.warning("job requeued before its journal row was written", job_id=job_id)
        return queued

    # -- periodic jobs ---------------------------------------------------------------------

    async def set_schedule_paused(self, name: str, paused: bool) -> None:
        """Pause or resume schedule ``name``; written to the file before returning.

        Raises:
            BrokerUnavailable: the file cannot be written.
        """
        await super().set_schedule_paused(name, paused)
        await self._save_schedule(name)

    async def record_tick(self, name: str, tick: float, job_id: str | None) -> None:
        """Keep ``tick`` as the latest of schedule ``name``, in the file too."""
        await super().record_tick(name, tick, job_id)
        await self._save_schedule(name)

    async def _save_schedule(self, name: str) -> None:
        state = self._schedules[name]
        try:
            await self._journal.between_commits(
                lambda store: save_schedule(store.connection, name, state)
            )
        except (StoreError, sqlite3.Error) as exc:
            raise BrokerUnavailable(f"sqlite: cannot write schedule {name!r}: {exc}") from None

    def unfinished_ids(self) -> list[str]:
        """None: queued and scheduled jobs stay in the journal for the next start."""
        return []

    def health(self) -> str | None:
        """Why the journal cannot be written, if its last commit failed."""
        error = self._journal.error
        return None if error is None else f"sqlite journal: {error}"

    async def aclose(self) -> None:
        """Wake waiters, commit what is left (jobs handed back), close the file."""
        await super().aclose()
        with trio.CancelScope(shield=True):
            error = await self._journal.close()
        path = str(self._journal.store.path)
        if error is not None:
            self._log.error("job database closed without its last writes", path=path, error=error)
        else:
            self._log.info("job database closed", path=path, kept=self._unfinished - self._running)


class _Problem(NamedTuple):
    """A row that does not decode: what could be read of its record, and what is wrong."""

    record: dict[str, Any]
    text: str


def _decode(row: StoredJob) -> Job | _Problem:
    """The job of ``row``, or what is wrong with the row (and what could be read of it)."""
    try:
        record = json.loads(row.record)
    except ValueError:
        return _Problem({}, "the record is not JSON")
    if not isinstance(record, dict):
        return _Problem({}, "the record is not a JSON object")
    try:
        job = job_from_record(record)
    except Exception as exc:  # InvalidValue, or anything a malformed record may cause
        return _Problem(record, str(exc) or type(exc).__name__)
    if job.id != row.id:
        return _Problem(record, f"the record names another id ({job.id!r})")
    return job
