"""Retention of finished jobs in memory: by age, count and bytes (``RESULT_TTL``,
``FAILED_TTL``, ``RESULT_MAX_JOBS``, ``RESULT_MAX_BYTES``), shared by the memory and SQLite
brokers."""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import orjson

from .._job import Job, JobStatus

#: What a finished job costs beside its payload, result and error: the record and its indexes.
RECORD_OVERHEAD = 512
_encode = json.JSONEncoder(default=str).encode


def _json_size(value: Any) -> int:
    # orjson first (an estimate: ten times faster, the same size but for non-ASCII text, which
    # it keeps as UTF-8); the standard encoder for what orjson refuses (keys that are not
    # strings, integers past 64 bits).
    try:
        return len(orjson.dumps(value, default=str))
    except (TypeError, orjson.JSONEncodeError):
        return len(_encode(value))


def record_size(job: Job) -> int:
    """About how many bytes ``job`` holds: its payload, result and error message as JSON, and
    :data:`RECORD_OVERHEAD`. The bound of byte retention (``RESULT_MAX_BYTES``)."""
    size = RECORD_OVERHEAD
    try:
        if job.payload:
            size += _json_size(job.payload)
        if job.result is not None:
            size += _json_size(job.result)
    except (TypeError, ValueError, RecursionError):
        size += RECORD_OVERHEAD  # not JSON (a library caller's payload): counted at least so
    if job.error is not None:
        size += len(job.error.message)
    return size


class FinishedJobs:
    """The finished jobs of ``jobs`` (the broker's records by id), in the order they finished.

    Completed and cancelled jobs are dropped after ``result_ttl`` seconds, failed ones after
    ``failed_ttl``; past ``max_jobs`` jobs or ``max_bytes`` bytes (:func:`record_size`), the
    oldest go first, completed and cancelled ones before failed ones.
    """

    def __init__(
        self,
        jobs: dict[str, Job],
        *,
        result_ttl: float,
        failed_ttl: float,
        max_jobs: int,
        max_bytes: int,
    ) -> None:
        self._jobs = jobs
        self.result_ttl = result_ttl
        self.failed_ttl = failed_ttl
        self.max_jobs = max_jobs
        self.max_bytes = max_bytes
        # (completed_at, id) in the order jobs finished: failed ones apart, kept longer. An
        # entry whose job was queued again since (retry) is stale: skipped.
        self._finished: deque[tuple[float, str]] = deque()
        self._failed: deque[tuple[float, str]] = deque()
        #: The size of each finished job and their sum.
        self._sizes: dict[str, int] = {}
        self.bytes = 0

    def add(self, job: Job) -> None:
        """Keep ``job``, which has just finished (at ``job.completed_at``)."""
        done = job.completed_at or 0.0
        (self._failed if job.status is JobStatus.FAILED else self._finished).append((done, job.id))
        size = self._sizes[job.id] = record_size(job)
        self.bytes += size

    def discard(self, job_id: str) -> None:
        """The job is no longer finished (queued again): stop counting its bytes."""
        self.bytes -= self._sizes.pop(job_id, 0)

    def evict(self, now: float) -> None:
        """Drop what the bounds no longer allow at ``now``."""
        finished, failed = self._finished, self._failed
        horizon, failed_horizon = now - self.result_ttl, now - self.failed_ttl
        while finished and finished[0][0] <= horizon:
            self._forget(finished.popleft())
        while failed and failed[0][0] <= failed_horizon:
            self._forget(failed.popleft())
        while (finished or failed) and (
            len(finished) + len(failed) > self.max_jobs or self.bytes > self.max_bytes
        ):
            self._forget((finished or failed).popleft())

    def _forget(self, entry: tuple[float, str]) -> None:
        done, job_id = entry
        job = self._jobs.get(job_id)
        if job is None or job.completed_at != done or not job.status.is_final:
            return  # stale: the job was queued again (retry) since
        del self._jobs[job_id]
        self.discard(job_id)
