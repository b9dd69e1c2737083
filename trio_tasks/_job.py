"""The job model: :class:`Priority`, :class:`JobStatus`, :class:`Job` and its JSON form."""

from __future__ import annotations

import copy
import enum
import json
from collections.abc import Callable, Mapping
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
            if text.isdecimal() and len(text) < 8:  # "²" is a digit that int() refuses
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
    #: String entries added at submission by submit hooks (trace context, say); they travel
    #: with the job to the node that runs it.
    meta: dict[str, str] = attrs.field(factory=dict)
    #: The final error of each earlier run of a job queued again after it failed or was
    #: cancelled (``POST /jobs/{id}/retry``), oldest first: ``{attempt, time, type, message}``.
    errors: list[dict[str, Any]] = attrs.field(factory=list)


def snapshot(job: Job) -> Job:
    """A shallow copy of ``job`` that a caller may keep while the original moves on."""
    # One per submission: the constructor called directly is six times faster than
    # attrs.evolve, which looks the fields up on every call (the tests check every field).
    return Job(
        id=job.id,
        type=job.type,
        priority=job.priority,
        payload=job.payload,
        max_attempts=job.max_attempts,
        timeout=job.timeout,
        created_at=job.created_at,
        status=job.status,
        attempts=job.attempts,
        run_at=job.run_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        worker_id=job.worker_id,
        result=job.result,
        error=job.error,
        progress=job.progress,
        meta=job.meta,
        errors=job.errors,
    )


def queue_wait(job: Job) -> float | None:
    """Seconds from the moment ``job`` became runnable to its start, ``None`` if not started.

    Runnable means submitted, or at its ``run_at`` (a delay or a retry) if that came later. The one
    definition that ``/stats`` and ``/metrics`` both report.
    """
    started = job.started_at
    if started is None:
        return None
    run_at = job.run_at
    runnable = job.created_at if run_at is None or run_at < job.created_at else run_at
    return max(0.0, started - runnable)


#: The range of POSIX seconds :func:`format_time` can render (years 1 to 9999, as ``datetime``);
#: submissions are held to it so that a job's record can always be answered.
EARLIEST_TIME = datetime(1, 1, 1, tzinfo=UTC).timestamp()
LATEST_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a job's result or progress (``None`` when it can): it must be a
    JSON value the API can send (no NaN or infinity, no cycle, no integer of more than 4,300
    digits, which Python refuses to write). Strings, booleans, ``None`` and 64-bit integers,
    the common cases, are not encoded to tell."""
    kind = type(value)
    if value is None or kind is str or kind is bool or (kind is int and value.bit_length() <= 64):
        return None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return str(exc)
    return None


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


def _error_to_json(error: JobError | None) -> dict[str, str] | None:
    return None if error is None else {"message": error.message, "type": error.type}


def _error_from_json(value: Any) -> JobError | None:
    if value is None:
        return None
    message, kind = value["message"], value["type"]
    if not isinstance(message, str) or not isinstance(kind, str):
        raise TypeError("error: expected {message: string, type: string}")
    return JobError(message, kind)


def _typed(*types: type, optional: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is None and optional:
            return None
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise TypeError(f"expected {' or '.join(t.__name__ for t in types)}, got {value!r}")
        return value

    return check


def _number(optional: bool) -> Callable[[Any], Any]:
    check = _typed(int, float, optional=optional)
    return lambda value: None if value is None else float(check(value))


def _identity(value: Any) -> Any:
    return value


@attrs.frozen
class JobField:
    """One field of :class:`Job` and how it crosses JSON.

    ``to_json`` renders it for the API (``GET /jobs/{id}``), ``to_record`` for storage (a
    broker's record, JSON too), ``from_record`` checks and converts a stored value back (raising
    ``TypeError``/``ValueError``/``KeyError`` on a malformed one). ``fallback`` is the value a
    record that cannot be decoded gets for this field (see :func:`salvage_record`).
    """

    name: str
    to_json: Callable[[Any], Any] = _identity
    to_record: Callable[[Any], Any] = _identity
    from_record: Callable[[Any], Any] = _identity
    fallback: Any = None
    #: Whether a record written before this field existed may lack it (it then gets
    #: ``fallback``): fields added to schema version 1 later are optional.
    optional: bool = False


#: Every field of a job, in record order: the one definition that the JSON form, the stored
#: record, the Redis hash (``RECORD_FIELDS``) and the Lua field list all derive from.
JOB_FIELDS: tuple[JobField, ...] = (
    JobField("id", from_record=_typed(str), fallback=""),
    JobField("type", from_record=_typed(str), fallback="(unknown)"),
    JobField("priority", str, int, lambda v: Priority(_typed(int)(v)), fallback=Priority.NORMAL),
    JobField("payload", from_record=_typed(dict), fallback={}),
    JobField("status", lambda s: s.value, lambda s: s.value, lambda v: JobStatus(_typed(str)(v))),
    JobField("attempts", from_record=_typed(int), fallback=0),
    JobField("max_attempts", from_record=_typed(int), fallback=0),
    JobField("timeout", from_record=_number(False), fallback=0.0),
    JobField("created_at", format_time, from_record=_number(False), fallback=0.0),
    JobField("run_at", format_time, from_record=_number(True)),
    JobField("started_at", format_time, from_record=_number(True)),
    JobField("completed_at", format_time, from_record=_number(True)),
    JobField("worker_id", from_record=_typed(str, optional=True)),
    JobField("result"),
    JobField("error", _error_to_json, _error_to_json, _error_from_json),
    JobField("progress"),
    JobField(
        "meta",
        from_record=lambda v: {} if v is None else _typed(dict)(v),
        fallback={},
        optional=True,
    ),
    JobField(
        "errors",
        from_record=lambda v: [] if v is None else _typed(list)(v),
        fallback=[],
        optional=True,
    ),
)

#: The keys of a stored record: the schema version, then :data:`JOB_FIELDS`.
RECORD_FIELDS: tuple[str, ...] = ("v", *(f.name for f in JOB_FIELDS))


def job_to_json(job: Job) -> dict[str, Any]:
    """Return the JSON-ready record of ``job`` (the form ``GET /jobs/{id}`` answers)."""
    return {f.name: f.to_json(getattr(job, f.name)) for f in JOB_FIELDS}


def job_to_record(job: Job) -> dict[str, Any]:
    """Return the stored form of ``job``: raw timestamps, numeric priority, and a version."""
    record: dict[str, Any] = {"v": JOB_SCHEMA_VERSION}
    for f in JOB_FIELDS:
        record[f.name] = f.to_record(getattr(job, f.name))
    return record


def job_from_record(record: Mapping[str, Any]) -> Job:
    """Rebuild a :class:`Job` from :func:`job_to_record`'s output.

    Raises:
        InvalidValue: the record has another schema version or is malformed; the message names
            the first bad field.
    """
    if not isinstance(record, Mapping):
        raise InvalidValue(f"malformed job record: expected an object, got {type(record).__name__}")
    if record.get("v") != JOB_SCHEMA_VERSION:
        raise InvalidValue(f"job record schema {record.get('v')!r} is not {JOB_SCHEMA_VERSION}")
    values: dict[str, Any] = {}
    for f in JOB_FIELDS:
        try:
            values[f.name] = f.from_record(record[f.name])
        except KeyError:
            if f.optional:
                values[f.name] = copy.copy(f.fallback)
                continue
            raise InvalidValue(f"malformed job record: field {f.name!r} is missing") from None
        except (TypeError, ValueError) as exc:
            raise InvalidValue(f"malformed job record: field {f.name!r}: {exc}") from None
    return Job(**values)


#: Statuses a job may be queued again from (``POST /jobs/{id}/retry``).
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


def requeued(job: Job) -> Job:
    """A copy of ``job`` (failed or cancelled) made ready to be queued again under its id: fresh
    attempts, no result, no error, its last error (or its cancellation) appended to ``errors``.
    The broker sets the status as it queues it."""
    error = job.error
    entry = {
        "attempt": job.attempts,
        "time": format_time(job.completed_at),
        "type": error.type if error is not None else "Cancelled",
        "message": error.message if error is not None else "cancelled",
    }
    return attrs.evolve(
        job,
        status=JobStatus.PENDING,
        attempts=0,
        run_at=None,
        started_at=None,
        completed_at=None,
        worker_id=None,
        result=None,
        error=None,
        progress=None,
        errors=[*job.errors, entry],
    )


#: ``JobError.type`` of a job whose stored record could not be decoded.
CORRUPT_RECORD = "CorruptRecord"


def salvage_record(record: Mapping[str, Any], job_id: str, problem: str) -> Job:
    """A ``failed`` job built from what can be read of a record that does not decode.

    Each field that decodes keeps its value, the others get their fallback; the id is
    ``job_id`` (where the record was found), and ``error`` names ``problem``. Brokers use it to
    quarantine a corrupt record as a failed job that stays visible instead of crashing a node.
    """
    values: dict[str, Any] = {}
    for f in JOB_FIELDS:
        try:
            values[f.name] = f.from_record(record[f.name])
        except (KeyError, TypeError, ValueError):
            values[f.name] = copy.copy(f.fallback)
    values["id"] = job_id
    values["status"] = JobStatus.FAILED
    values["error"] = JobError(f"corrupt job record: {problem}", CORRUPT_RECORD)
    return Job(**values)
