"""The JSON of live job events, made cheaply: a hub follower makes one per job event on the
workers' path (see :mod:`trio_tasks._events`).

:func:`job_json_bytes` is :func:`~trio_tasks._job.job_to_json` encoded, the same JSON value that
``GET /jobs/{id}`` answers, in a fraction of its time: the record is built field by field
without the generic field converters, timestamps are formatted with the date and minute cached,
and orjson encodes it (the standard library's encoder, the HTTP answers', takes what orjson
refuses). The texts may differ from the HTTP answer's (orjson writes non-ASCII characters as
UTF-8, not ``\\u`` escapes), the values do not.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import orjson

from ._job import JOB_FIELDS, Job, JobStatus, Priority, format_time

# The encoder of the HTTP answers (http/_errors.py), for what orjson refuses (an integer of
# more than 64 bits, a non-string key it cannot convert).
_encode_json = json.JSONEncoder(separators=(",", ":"), default=str).encode
# Datetimes and dataclasses to `default` (str) as the HTTP answers' encoder does.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# Keys that are not strings, converted as the HTTP answers' encoder does: only for the rare value
# that has them, as checking every key costs a third of orjson's time.
_OPTIONS_ANY_KEYS = _OPTIONS | orjson.OPT_NON_STR_KEYS
_PRIORITY = {priority: str(priority) for priority in Priority}
_STATUS = {status: status.value for status in JobStatus}
#: The order of the keys of :func:`job_record` (checked against ``JOB_FIELDS`` by the tests).
FIELD_NAMES = tuple(f.name for f in JOB_FIELDS)


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON (UTF-8)."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        pass
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS_ANY_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return _encode_json(value).encode()


def priority_name(priority: Priority) -> str:
    """``str(priority)``, looked up."""
    return _PRIORITY[priority]


def status_name(status: JobStatus) -> str:
    """``status.value``, looked up (an enum's ``value`` is a slow descriptor)."""
    return _STATUS[status]


def job_record(job: Job) -> dict[str, Any]:
    """:func:`~trio_tasks._job.job_to_json` of ``job``, built directly."""
    return _record(job, _PRIORITY[job.priority], _STATUS[job.status])


def _record(job: Job, priority: str, status: str) -> dict[str, Any]:
    # Timestamps through the cache first: a job's three events share most of them.
    error = job.error
    created, run, started, completed = job.created_at, job.run_at, job.started_at, job.completed_at
    times = _TIMES
    return {
        "id": job.id,
        "type": job.type,
        "priority": priority,
        "payload": job.payload,
        "status": status,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "timeout": job.timeout,
        "created_at": times.get(created) or fast_time(created),
        "run_at": None if run is None else times.get(run) or fast_time(run),
        "started_at": None if started is None else times.get(started) or fast_time(started),
        "completed_at": (
            None if completed is None else times.get(completed) or fast_time(completed)
        ),
        "worker_id": job.worker_id,
        "result": job.result,
        "error": None if error is None else {"message": error.message, "type": error.type},
        "progress": job.progress,
        "meta": job.meta,
        "errors": job.errors,
    }


def job_json_bytes(job: Job) -> bytes:
    """``job``'s JSON, as ``GET /jobs/{id}`` answers it (UTF-8)."""
    return dumps(job_record(job))


def state_parts(job: Job) -> tuple[str, str, bytes]:
    """``job``'s priority and status names and its JSON (:func:`job_json_bytes`), at once."""
    priority = _PRIORITY[job.priority]
    status = _STATUS[job.status]
    return priority, status, dumps(_record(job, priority, status))


# "YYYY-MM-DDTHH:MM:" of recent minutes (since the epoch), and recent timestamps' texts (a job's
# creation time is in each of its events).
_MINUTES: dict[int, str] = {}
_TIMES: dict[float, str] = {}
_KEPT = 4096


def fast_time(timestamp: float | None) -> str | None:
    """:func:`~trio_tasks._job.format_time`, the same text, several times faster."""
    if timestamp is None:
        return None
    text = _TIMES.get(timestamp)
    if text is not None:
        return text
    # Microseconds rounded half to even, as datetime.fromtimestamp does.
    fraction, whole = math.modf(timestamp)
    micro = round(fraction * 1e6)
    second = int(whole)
    if micro >= 1_000_000:
        second += 1
        micro -= 1_000_000
    if micro < 0 or second < 0:
        return format_time(timestamp)
    minute, second = divmod(second, 60)
    prefix = _MINUTES.get(minute)
    if prefix is None:
        if len(_MINUTES) >= _KEPT:
            _MINUTES.clear()
        prefix = _MINUTES[minute] = str(format_time(minute * 60.0))[:-3]
    text = f"{prefix}{second:02d}.{micro:06d}Z" if micro else f"{prefix}{second:02d}Z"
    if len(_TIMES) >= _KEPT:
        _TIMES.clear()
    _TIMES[timestamp] = text
    return text


_from_timestamp = datetime.fromtimestamp

#: The fields of a job's *summary*, the ``data`` of a ``state`` event on ``GET /events`` (the
#: default detail): what a dashboard's tables show. The rest (payload, result, meta, earlier
#: errors, timestamps but two) is ``GET /jobs/{id}``'s.
SUMMARY_FIELDS = (
    "id",
    "type",
    "priority",
    "status",
    "attempts",
    "max_attempts",
    "progress",
    "created_at",
    "completed_at",
    "error",
)
#: About the bytes a summary's values take while held (besides the id, type, error message and
#: a progress that is not a number): for the bound on what the hub holds.
SUMMARY_SIZE = 256


def progress_fragment(progress: Any) -> tuple[Any, bytes]:
    """``progress`` as it may be held until a summary is encoded, and its JSON.

    Numbers (the common case) are held as they are; anything else (a dict, a long text, an
    integer beyond 64 bits) is encoded now: it may be large, the bound on what the hub holds
    must count it, and a worker may change a mutable value later (a summary shows the value of
    its moment). A value no encoder takes (an integer of more than 4,300 digits, a cycle) is
    held as ``null``: never an error on the workers' path.
    """
    try:
        encoded = dumps(progress)
    except (ValueError, TypeError, RecursionError):
        encoded = b"null"
    return orjson.Fragment(encoded), encoded


def summary_bytes(
    job_id: str, job_type: str, priority: str, status: str, values: tuple[Any, ...]
) -> bytes:
    """The summary (:data:`SUMMARY_FIELDS`) of a job, as JSON. ``values`` are the job's
    ``attempts``, ``max_attempts``, ``progress`` and its JSON when encoded early (see
    :func:`progress_fragment`; ``None`` for a number), ``created_at``, ``completed_at`` (POSIX
    seconds) and ``error`` (a ``JobError`` or ``None``) when the summary was taken."""
    attempts, max_attempts, progress, created, completed, error, encoded = values
    head = (job_id, job_type, priority, status, attempts, max_attempts)
    # Timestamps as datetimes that orjson formats: the text of format_time (the job's JSON),
    # several times faster than formatting them here (a summary's are rarely seen twice).
    try:
        return orjson.dumps(
            _summary(
                *head,
                progress,
                _from_timestamp(created, UTC),
                None if completed is None else _from_timestamp(completed, UTC),
                error,
            ),
            option=orjson.OPT_UTC_Z,
        )
    except (orjson.JSONEncodeError, TypeError, ValueError, OverflowError, OSError):
        pass
    # What orjson refuses (an error message with a lone surrogate, a time out of range): the
    # standard library's encoder, as for the job's JSON, given plain values (it knows no
    # Fragment) and no NaN (browsers' JSON.parse refuses it).
    if encoded is not None:
        progress = json.loads(encoded)
    elif type(progress) is float and not math.isfinite(progress):
        progress = None
    return dumps(_summary(*head, progress, fast_time(created), fast_time(completed), error))


def _summary(
    job_id: str,
    job_type: str,
    priority: str,
    status: str,
    attempts: int,
    max_attempts: int,
    progress: Any,
    created_at: Any,
    completed_at: Any,
    error: Any,
) -> dict[str, Any]:
    # The summary's fields, in the order of SUMMARY_FIELDS; times as given (text or datetime).
    return {
        "id": job_id,
        "type": job_type,
        "priority": priority,
        "status": status,
        "attempts": attempts,
        "max_attempts": max_attempts,
        "progress": progress,
        "created_at": created_at,
        "completed_at": completed_at,
        "error": None if error is None else {"message": error.message, "type": error.type},
    }


def summary_of_json(data: bytes) -> bytes:
    """The summary of a job given as its full JSON (another node's event); ``data`` itself if
    it is not a job's JSON object."""
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    if not isinstance(record, dict):
        return data
    return dumps({name: record.get(name) for name in SUMMARY_FIELDS})
