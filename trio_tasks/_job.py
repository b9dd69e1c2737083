"""The job model: :class:`Priority`, :class:`JobStatus`, :class:`Job` and its JSON form."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import attrs

from ._errors import InvalidValue


class Priority(enum.IntEnum):
    """How urgent a job is. Higher runs first; FIFO within one level."""

    LOW = 1
    NORMAL = 2
    HIGH = 3
    URGENT = 4

    @classmethod
    def parse(cls, value: object) -> Priority:
        """Return the priority named by ``value``: a name (any case), or the number 1-4.

        Raises:
            InvalidValue: anything else; the message lists the valid values.
        """
        if isinstance(value, Priority):
            return value
        number = value
        if isinstance(value, str):
            text = value.strip()
            member = _PRIORITY_NAMES.get(text.lower())
            if member is not None:
                return member
            if text.isdigit():
                number = int(text)
        if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= 4:
            return cls(number)
        # Name the value as it was given ('5' from a query string, not 5).
        raise InvalidValue(
            f"invalid priority {value!r}; expected one of low, normal, high, urgent (or 1-4)"
        )

    def __str__(self) -> str:
        # A table lookup: logs, metrics and HTTP answers render priorities for every job.
        return _PRIORITY_TEXT[self]


_PRIORITY_NAMES = {p.name.lower(): p for p in Priority}
_PRIORITY_TEXT = {p: name for name, p in _PRIORITY_NAMES.items()}
#: Priorities from the most to the least urgent: the order in which workers look at queues.
PRIORITIES_HIGH_FIRST = tuple(sorted(Priority, reverse=True))


class JobStatus(enum.StrEnum):
    """Where a job is in its life. The last three are final."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """Whether the job can change no more."""
        return self in _FINAL

    @classmethod
    def parse(cls, value: str) -> JobStatus:
        """Return the status named ``value``; raise :class:`InvalidValue` listing the valid ones."""
        try:
            return cls(value.strip().lower())
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise InvalidValue(f"invalid status {value!r}; expected one of {valid}") from None


_FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


@attrs.frozen
class JobError:
    """The last failure of a job: its message and the exception type's name."""

    message: str
    type: str


@attrs.define(eq=False, slots=True)
class Job:
    """One unit of work and everything known about it.

    Timestamps are POSIX seconds (``float``) or ``None``; :func:`job_to_json` renders them as
    RFC 3339 UTC strings. ``timeout`` is in seconds. ``attempts`` counts attempts started so far.
    """

    id: str
    type: str
    priority: Priority
    payload: dict[str, Any]
    max_attempts: int
    timeout: float
    created_at: float
    status: JobStatus = JobStatus.PENDING
    attempts: int = 0
    run_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    worker_id: str | None = None
    result: Any = None
    error: JobError | None = None
    progress: Any = None


#: The range of POSIX seconds :func:`format_time` can render (years 1 to 9999, as ``datetime``);
#: submissions are held to it so that a job's record can always be answered.
EARLIEST_TIME = datetime(1, 1, 1, tzinfo=UTC).timestamp()
LATEST_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def format_time(timestamp: float | None) -> str | None:
    """Render POSIX seconds as RFC 3339 UTC with microseconds (``2024-01-01T12:00:00.000001Z``)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str, *, name: str = "time") -> float:
    """Parse an RFC 3339 / ISO 8601 timestamp into POSIX seconds; naive times are taken as UTC."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        raise InvalidValue(
            f"{name}: expected an RFC 3339 timestamp like 2024-01-01T12:00:00Z, got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


#: Version of the stored JSON form of a job; bumped on any incompatible change.
JOB_SCHEMA_VERSION = 1


def job_to_json(job: Job) -> dict[str, Any]:
    """Return the JSON-ready record of ``job`` (the form ``GET /jobs/{id}`` answers)."""
    error = job.error
    return {
        "id": job.id,
        "type": job.type,
        "priority": str(job.priority),
        "payload": job.payload,
        "status": job.status.value,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "timeout": job.timeout,
        "created_at": format_time(job.created_at),
        "run_at": format_time(job.run_at),
        "started_at": format_time(job.started_at),
        "completed_at": format_time(job.completed_at),
        "worker_id": job.worker_id,
        "result": job.result,
        "error": None if error is None else {"message": error.message, "type": error.type},
        "progress": job.progress,
    }


def job_to_record(job: Job) -> dict[str, Any]:
    """Return the stored form of ``job``: :func:`job_to_json` with raw timestamps and a version."""
    error = job.error
    return {
        "v": JOB_SCHEMA_VERSION,
        "id": job.id,
        "type": job.type,
        "priority": int(job.priority),
        "payload": job.payload,
        "status": job.status.value,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "timeout": job.timeout,
        "created_at": job.created_at,
        "run_at": job.run_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "worker_id": job.worker_id,
        "result": job.result,
        "error": None if error is None else {"message": error.message, "type": error.type},
        "progress": job.progress,
    }


def job_from_record(record: dict[str, Any]) -> Job:
    """Rebuild a :class:`Job` from :func:`job_to_record`'s output.

    Raises:
        InvalidValue: the record has another schema version or is malformed.
    """
    if record.get("v") != JOB_SCHEMA_VERSION:
        raise InvalidValue(f"job record schema {record.get('v')!r} is not {JOB_SCHEMA_VERSION}")
    try:
        error = record["error"]
        return Job(
            id=record["id"],
            type=record["type"],
            priority=Priority(record["priority"]),
            payload=record["payload"],
            status=JobStatus(record["status"]),
            attempts=record["attempts"],
            max_attempts=record["max_attempts"],
            timeout=record["timeout"],
            created_at=record["created_at"],
            run_at=record["run_at"],
            started_at=record["started_at"],
            completed_at=record["completed_at"],
            worker_id=record["worker_id"],
            result=record["result"],
            error=None if error is None else JobError(error["message"], error["type"]),
            progress=record["progress"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidValue(f"malformed job record: {exc!r}") from None
