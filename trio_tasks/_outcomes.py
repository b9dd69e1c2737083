"""What an attempt means once it has ended: retry or not, record it, then count, log and tell
listeners, but only what the broker recorded.

The one place where final states and retries are announced: the processor's counters, its log
lines and its listeners (metrics) all follow from :meth:`OutcomeRecorder.record`, so they agree
with the broker even when an outcome could not be written.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from ._backoff import backoff_delay
from ._config import Config
from ._durations import format_duration
from ._errors import PermanentError, Retry
from ._job import Job, JobStatus
from ._logging import log_enabled
from ._runner import Attempt, AttemptEnd
from .brokers._base import Broker, Delivery, Recording, RecordStatus

_RECORDED = RecordStatus.RECORDED
_SUCCEEDED = AttemptEnd.SUCCEEDED
#: The event announced for the status a recorded outcome left the job in.
_EVENTS = {
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
    JobStatus.SCHEDULED: "retried",
    JobStatus.PENDING: "retried",
}


class OutcomeRecorder:
    """Records attempts' outcomes through ``broker`` and keeps the counters of what was recorded.

    ``counts`` maps ``submitted``, ``completed``, ``failed``, ``retried`` and ``cancelled`` to
    this processor's totals (``submitted`` is counted by the processor itself).
    """

    def __init__(
        self,
        broker: Broker,
        config: Config,
        log: Any,
        listeners: list[Callable[[str, Job], None]],
        rng: random.Random,
        now: Callable[[], float],
    ) -> None:
        self._broker = broker
        self._now = now
        self._info = log_enabled(log, logging.INFO)
        self._config = config
        self._log = log
        self._listeners = listeners
        self._rng = rng
        self.counts = dict.fromkeys(
            ("submitted", "completed", "failed", "retried", "cancelled", "requeued"), 0
        )

    async def record(self, delivery: Delivery, attempt: Attempt) -> bool | None:
        """Record ``attempt`` of ``delivery``'s job; return whether it succeeded, or ``None`` if
        the broker did not record it (nothing is counted, announced or told then). Call it
        shielded from cancellation."""
        end = attempt.end
        broker = self._broker
        retry_in: float | None = None
        if end is _SUCCEEDED:
            recording = await broker.complete(delivery, attempt.result)
        elif end is AttemptEnd.CANCELLED:
            recording = await broker.finish_cancelled(delivery)
        else:
            error = attempt.error
            assert error is not None
            retry_in = self._retry_delay(delivery.job, attempt.exc)
            retry_at = None if retry_in is None else self._now() + retry_in
            recording = await broker.fail(delivery, error, retry_at)
        if recording.status is not _RECORDED:
            self._not_recorded(recording, end)
            return None
        job = recording.job
        self.announce(_EVENTS.get(job.status, "retried"), job, attempt, retry_in)
        return end is _SUCCEEDED

    def _retry_delay(self, job: Job, exc: BaseException | None) -> float | None:
        if job.attempts >= job.max_attempts or isinstance(exc, PermanentError):
            return None
        if isinstance(exc, Retry) and exc.delay is not None:
            return exc.delay
        cfg = self._config
        return backoff_delay(job.attempts, cfg.retry_delay, cfg.retry_max_delay, self._rng)

    def announce(
        self,
        event: str,
        job: Job,
        attempt: Attempt | None,
        retry_in: float | None = None,
    ) -> None:
        """Count ``event`` (``completed``, ``failed``, ``retried``, ``cancelled``) for ``job``,
        log its line and tell the listeners."""
        self.counts[event] += 1
        if self._listeners:
            self.emit(event, job)
        log = self._log
        if event != "failed" and not self._info:
            return
        fields: dict[str, Any] = {
            "job_id": job.id,
            "job_type": job.type,
            "priority": str(job.priority),
        }
        if attempt is not None:
            fields.update(
                worker_id=job.worker_id,
                attempt=job.attempts,
                duration=format_duration(attempt.elapsed),
            )
        error = job.error
        if event == "failed" and error is not None:
            log.error("job failed", error=error.message, error_type=error.type, **fields)
        elif event == "retried" and error is not None:
            retry = format_duration(retry_in) if retry_in is not None else None
            log.info("job retrying", error=error.message, retry_in=retry, **fields)
        else:
            log.info(f"job {event}", **fields)

    def _not_recorded(self, recording: Recording, end: AttemptEnd) -> None:
        job = recording.job
        if recording.status is RecordStatus.LEASE_LOST:
            message = "outcome not recorded: the lease was lost, another node owns the job"
        else:
            message = "outcome not recorded: the job will run again"
        self._log.warning(
            message,
            job_id=job.id,
            job_type=job.type,
            outcome=end.value,
            status=job.status.value,
        )

    def emit(self, event: str, job: Job) -> None:
        """Tell every listener; a failing listener is logged, never raised."""
        for listener in self._listeners:
            try:
                listener(event, job)
            except Exception:
                # A listener (metrics, say) must not take the workers down with it, nor turn an
                # admitted submission into an error for its caller.
                self._log.exception("job listener failed", listener=repr(listener), job_event=event)
