"""The exception tree of trio-tasks.

Every error the package raises on purpose derives from :class:`TrioTasksError` and from the
builtin whose meaning matches, so callers can catch either. Messages name the bad value and what
was expected.
"""

from __future__ import annotations

from collections.abc import Iterable


class TrioTasksError(Exception):
    """Base class of every error raised by trio-tasks on purpose."""


class InvalidValue(TrioTasksError, ValueError):
    """A value (a priority, a duration, a job field, a setting) is malformed or out of range."""


class QueueFull(TrioTasksError):
    """The admission bound is reached: the job was refused, not queued.

    Raised at once, never after waiting. ``limit`` is the bound that was reached.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"queue full: {limit} unfinished jobs is the limit (max_concurrency)")
        self.limit = limit


class BrokerUnavailable(TrioTasksError):
    """The broker (Redis) cannot be reached, so the request was not carried out.

    For a submission the outcome may be unknown (the connection broke while Redis answered):
    submit again with the same ``job_id`` to be sure, which never creates a duplicate. The HTTP
    API answers 503. ``reason`` says what failed.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"broker unavailable: {reason}")
        self.reason = reason


class ShuttingDown(TrioTasksError, RuntimeError):
    """The processor is stopping and takes no new jobs."""

    def __init__(self, message: str = "shutting down: no new jobs are accepted") -> None:
        super().__init__(message)


class UnknownJobType(TrioTasksError, LookupError):
    """No handler is registered for a job type; ``known`` lists the registered ones."""

    def __init__(self, job_type: str, known: Iterable[str]) -> None:
        self.job_type = job_type
        self.known = sorted(known)
        listed = ", ".join(self.known) or "(none registered)"
        super().__init__(f"unknown job type {job_type!r}; known types: {listed}")

    def __str__(self) -> str:
        return str(self.args[0])


class JobNotFound(TrioTasksError, LookupError):
    """No job with this id exists (or it has expired from retention)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id!r} not found")

    def __str__(self) -> str:
        return str(self.args[0])


class JobAlreadyFinished(TrioTasksError, RuntimeError):
    """The job has already reached a final state, so it cannot be cancelled."""

    def __init__(self, job_id: str, status: str) -> None:
        self.job_id = job_id
        self.status = status
        super().__init__(f"job {job_id!r} is already {status}")


class JobNotRetryable(TrioTasksError, RuntimeError):
    """The job is neither failed nor cancelled, so it cannot be queued again."""

    def __init__(self, job_id: str, status: str) -> None:
        self.job_id = job_id
        self.status = status
        super().__init__(
            f"job {job_id!r} is {status}: only a failed or cancelled job can be retried"
        )


class Retry(TrioTasksError):  # a control-flow signal, named for what the handler asks
    """Raised by a handler to fail this attempt and retry after ``delay`` seconds.

    The retry still counts against the job's attempts. ``delay=None`` uses the normal backoff.
    """

    def __init__(self, delay: float | None = None, message: str = "retry requested") -> None:
        super().__init__(message)
        if delay is not None and delay < 0:
            raise InvalidValue(f"Retry delay must be >= 0 seconds, got {delay!r}")
        self.delay = delay


class PermanentError(TrioTasksError):
    """Raised by a handler to fail the job at once, without further retries."""
