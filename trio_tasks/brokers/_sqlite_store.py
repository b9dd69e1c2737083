"""The SQLite journal of the SQLite broker, synchronous: open (lock, checks, schema), load,
write, close.

One :class:`JobStore` holds one connection. The broker calls it from one thread at a time (at
start-up from the constructor, afterwards through a Trio capacity limiter of one), never from
the event loop while it runs. Every failure of SQLite or of the file system comes out as a
:class:`StoreError` (or, for a write, its message) saying what is wrong and with which file,
never as a bare ``sqlite3`` exception.

The table, one row per job::

    jobs(n INTEGER PRIMARY KEY,  -- the row's number, given at the job's first write
         id TEXT,                -- the job's id (the broker maps ids to row numbers)
         status TEXT,            -- its status (also in the record; here for queries)
         queued INTEGER,         -- write sequence: the queue order of pending jobs
         finished_at REAL,       -- when it became final, else NULL: retention by age and count
         size INTEGER,           -- bytes of the record: retention by bytes
         record TEXT)            -- the job, trio_tasks._job.job_to_record() as JSON

Rows are keyed by number, not by id: an integer key is one B-tree, a text key two (and random
ids make the second one slow to write). ``PRAGMA application_id`` marks the file as
trio-tasks', ``PRAGMA user_version`` is the version of this layout.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from .._errors import TrioTasksError

#: ``PRAGMA application_id`` of a trio-tasks journal ("TTSQ").
APPLICATION_ID = 0x54545351
#: ``PRAGMA user_version``: the version of the table layout below.
LAYOUT_VERSION = 1
#: ``PRAGMA synchronous`` values a URL may ask for (``?synchronous=full``).
SYNCHRONOUS = ("normal", "full")

#: The oldest SQLite this module works with (``RETURNING``, window functions, JSON).
MIN_SQLITE = (3, 35, 0)

_SCHEMA = """
CREATE TABLE jobs (
    n INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    status TEXT NOT NULL,
    queued INTEGER NOT NULL,
    finished_at REAL,
    size INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
"""
# One statement writes a whole batch: one transaction, and one release of the GIL by the
# thread that runs it (each release costs a wait of up to 5 ms for a busy event loop to hand the
# GIL back, so one statement per row would be slow). ``?1`` is a JSON array of rows
# ``[n, id, status, queued, finished_at, offset, size]``; the records are the bytes at
# ``offset`` (1-based) of ``?2``: JSON that SQLite copies without parsing it.
_WRITE = """
INSERT OR REPLACE INTO jobs (n, id, status, queued, finished_at, size, record)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[6]'),
       CAST(substr(?2, json_extract(value, '$[5]'), json_extract(value, '$[6]')) AS TEXT)
FROM json_each(?1)
"""
# Retention, the rules of the memory broker: by age (failed jobs by the longer of two ages),
# then the newest ``max_jobs`` finished jobs of at most ``max_bytes`` bytes in all, failed ones
# kept first.
_EXPIRE = (
    "DELETE FROM jobs WHERE finished_at IS NOT NULL "
    "AND finished_at <= CASE status WHEN 'failed' THEN ? ELSE ? END RETURNING id, n"
)
_TRIM = """
DELETE FROM jobs WHERE n IN (
    SELECT n FROM (
        SELECT n, row_number() OVER newest AS rank, sum(size) OVER newest AS total
        FROM jobs WHERE finished_at IS NOT NULL
        WINDOW newest AS (ORDER BY status = 'failed' DESC, finished_at DESC, n DESC)
    ) WHERE rank > ? OR total > ?
) RETURNING id, n
"""


class StoreError(TrioTasksError):
    """SQLite or the file system failed; the message names the file and the problem."""


class Retention(NamedTuple):
    """What :meth:`JobStore.write` deletes: finished jobs final before ``horizon`` (failed ones
    before ``failed_horizon``), and past the newest ``max_jobs`` or ``max_bytes``."""

    horizon: float
    failed_horizon: float
    max_jobs: int
    max_bytes: int


class StoredJob(NamedTuple):
    """A row as loaded: its number, id, status column, queue order and record (JSON text)."""

    n: int
    id: str
    status: str
    queued: int
    record: str


class Written(NamedTuple):
    """What :meth:`JobStore.write` did: ``error`` (``None`` once committed) and the
    ``(id, n)`` of the rows retention deleted."""

    error: str | None
    deleted: list[tuple[str, int]]


class JobStore:
    """The journal file: opened, locked and checked by the constructor.

    Raises:
        StoreError: the file is in use by another process, is not a trio-tasks journal, is
            corrupt, cannot be created or written (read-only directory, full disk), or this
            SQLite lacks the JSON functions.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "normal") -> None:
        self.path = Path(path).absolute()
        self._lock_fd = _lock(self.path)
        try:
            self.connection = self._open(synchronous)
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _open(self, synchronous: str) -> sqlite3.Connection:
        # One connection, used by one thread at a time (the broker's limiter), so not bound to
        # the thread that made it. Autocommit: transactions are explicit (BEGIN IMMEDIATE).
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old: trio-tasks needs SQLite >= "
                + ".".join(map(str, MIN_SQLITE))
            )
        with self._errors("cannot open"):
            connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
        try:
            with self._errors("cannot open"):
                application_id = connection.execute("PRAGMA application_id").fetchone()[0]
                tables = connection.execute(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'table'"
                ).fetchone()[0]
                if application_id != APPLICATION_ID and tables:
                    raise StoreError(
                        f"{self.path} is not a trio-tasks job database (it holds other tables); "
                        "use a file of its own"
                    )
                version = connection.execute("PRAGMA user_version").fetchone()[0]
                if tables and version != LAYOUT_VERSION:
                    raise StoreError(
                        f"{self.path} has job table layout {version}, this release reads "
                        f"layout {LAYOUT_VERSION}"
                    )
                mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise StoreError(f"{self.path}: cannot use write-ahead logging (got {mode})")
                connection.execute(f"PRAGMA synchronous = {synchronous}")
                # Keep the write-ahead log small once checkpointed.
                connection.execute("PRAGMA journal_size_limit = 8388608")
                try:
                    connection.execute("SELECT json_set('{}', '$.a', 1)").fetchone()
                except sqlite3.OperationalError:
                    raise StoreError(
                        f"SQLite {sqlite3.sqlite_version} has no JSON functions; "
                        "trio-tasks needs an SQLite built with them (the default since 3.38)"
                    ) from None
                if not tables:
                    connection.executescript(
                        f"BEGIN IMMEDIATE; {_SCHEMA}"
                        f"PRAGMA application_id = {APPLICATION_ID};"
                        f"PRAGMA user_version = {LAYOUT_VERSION}; COMMIT;"
                    )
                # Every page read once: a file that is damaged fails here, at start-up.
                problems = connection.execute("PRAGMA quick_check").fetchall()
                if problems != [("ok",)]:
                    first = "; ".join(str(p[0]) for p in problems[:3])
                    raise StoreError(f"{self.path} is corrupt: {first}")
        except BaseException:
            connection.close()
            raise
        return connection

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except sqlite3.Error as exc:
            raise StoreError(describe(self.path, exc, doing)) from None
        except OSError as exc:
            raise StoreError(f"{doing} {self.path}: {exc.strerror or exc}") from None

    # -- start-up --------------------------------------------------------------------------

    def load(self, retention: Retention) -> tuple[list[StoredJob], int]:
        """Apply ``retention``, then return every row in the order jobs were first written,
        and the last queue sequence number used.

        Raises:
            StoreError: reading or writing failed.
        """
        with self._errors("cannot read"):
            self._retain(retention)
            rows = self.connection.execute(
                "SELECT n, id, status, queued, record FROM jobs ORDER BY n"
            ).fetchall()
            last = self.connection.execute("SELECT max(queued) FROM jobs").fetchone()[0]
        return [StoredJob(*row) for row in rows], int(last or 0)

    # -- running ---------------------------------------------------------------------------

    def write(self, rows: str, records: bytes, retention: Retention | None) -> Written:
        """Write ``rows`` (see ``_WRITE``; one statement, so one transaction), then apply
        ``retention``.

        Never raises: a write that fails (the disk is full, the file became read-only…) returns
        why, and nothing of it was written.
        """
        deleted: list[tuple[str, int]] = []
        try:
            if rows != "[]":
                self.connection.execute(_WRITE, (rows, records))
        except sqlite3.Error as exc:
            return Written(describe(self.path, exc, "cannot write"), deleted)
        except OSError as exc:
            return Written(f"cannot write {self.path}: {exc.strerror or exc}", deleted)
        if retention is not None:
            # The rows are committed whatever happens next: a failed retention (a full disk
            # while its deletions grow the log) must not make them look unwritten. Retention
            # runs again within a second.
            with contextlib.suppress(sqlite3.Error, OSError):
                deleted = self._retain(retention)
        return Written(None, deleted)

    def drop(self, numbers: Sequence[int]) -> None:
        """Delete the rows numbered ``numbers`` (stale duplicates found at start-up).

        Raises:
            StoreError: the write failed.
        """
        with self._errors("cannot write"), self._transaction():
            self.connection.executemany("DELETE FROM jobs WHERE n = ?", [(n,) for n in numbers])

    def _retain(self, retention: Retention) -> list[tuple[str, int]]:
        with self._transaction():
            execute = self.connection.execute
            deleted = execute(_EXPIRE, (retention.failed_horizon, retention.horizon)).fetchall()
            deleted += execute(_TRIM, (retention.max_jobs, retention.max_bytes)).fetchall()
        return deleted

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Checkpoint the write-ahead log into the file, close, and release the lock."""
        try:
            with contextlib.suppress(sqlite3.Error):
                self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.connection.close()
        finally:
            os.close(self._lock_fd)


def describe(path: Path, exc: sqlite3.Error, doing: str) -> str:
    """One line for a failure of SQLite: what failed, the file, SQLite's words."""
    name = getattr(exc, "sqlite_errorname", "")
    hint = _HINTS.get(name.split("_")[0] if name.startswith("SQLITE_IOERR") else name, "")
    if not hint and name.startswith("SQLITE_READONLY"):
        hint = _HINTS["SQLITE_READONLY"]
    return f"{doing} {path}: {exc}{hint}"


_HINTS = {
    "SQLITE_FULL": " (the disk or the file system is full)",
    "SQLITE_READONLY": " (the file or its directory is read-only)",
    "SQLITE_CANTOPEN": " (the directory is missing or not writable, or the file unreadable)",
    "SQLITE_NOTADB": " (not an SQLite database: move it aside or restore a backup)",
    "SQLITE_CORRUPT": " (the file is damaged: move it aside or restore a backup)",
    "SQLITE_IOERR": " (an I/O error of the disk or the file system)",
    "SQLITE_PERM": " (permission denied)",
    "SQLITE_BUSY": " (another process holds the database)",
}


def _lock(path: Path) -> int:
    """Take the lock file beside ``path`` (``<path>.lock``, holding our pid) so that one process
    owns the journal at a time; released when the process ends, however it ends.

    Raises:
        StoreError: another process holds it, or it cannot be created.
    """
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(
            f"cannot use {path}: cannot create its lock file {lock_path}: {exc.strerror or exc}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StoreError(
            f"{path} is in use by another process (pid {holder}): one process owns a job "
            "database at a time; share work between processes with Redis instead"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise StoreError(f"cannot lock {lock_path}: {exc.strerror or exc}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd
