"""The job hash of the Redis broker, to and from Python: encoding never loses a digit,
decoding never raises.

A job's hash holds the values of :data:`~trio_tasks._job.RECORD_FIELDS`, each JSON-encoded. A
record that does not decode (a field that is not JSON, a wrong schema, a key of another type)
comes back as :class:`Corrupt` (the id and the problem), for the broker to quarantine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from .._job import (
    JOB_SCHEMA_VERSION,
    RECORD_FIELDS,
    Job,
    JobStatus,
    job_from_record,
    job_to_record,
)
from .._stats import NodeView, WorkerStats

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads


class Corrupt(NamedTuple):
    """A stored record that does not decode: its id and what is wrong with it."""

    job_id: str
    problem: str


#: The fields that hold a caller's data: encoded by the standard library, which keeps a float
#: NaN or infinity as it came (orjson would write null).
_USER_FIELDS = frozenset({"payload", "result", "progress"})
#: The fields a new job's hash leaves out while they are null (a missing one reads as null),
#: and those it leaves out while empty (they decode to empty when missing). A new job has
#: nine of them: storing them cost Redis about as much as the rest of its admission.
SPARSE_NULL = frozenset(
    {"run_at", "started_at", "completed_at", "worker_id", "result", "error", "progress"}
)
_SPARSE_EMPTY = frozenset({"meta", "errors"})


def encode_job(job: Job, *, new: bool = False) -> list[str]:
    """The job's hash as a flat ``[field, value, ...]`` list, each value JSON-encoded; with
    ``new`` (a job's first record, written where no key is), without the fields of
    :data:`SPARSE_NULL` that are null and the empty ``meta`` and ``errors``.

    The broker's own fields go through orjson (a third of the cost of a job's encoding: one
    encoder call per field added up to ~25 µs per submitted job); what orjson refuses (a lone
    surrogate in an error message, an integer beyond 64 bits) falls back to the standard
    encoder. Both write the same digits for every float."""
    flat: list[str] = []
    for name, value in job_to_record(job).items():
        if new and (
            (value is None and name in SPARSE_NULL) or (not value and name in _SPARSE_EMPTY)
        ):
            continue
        flat.append(name)
        if name in _USER_FIELDS:
            flat.append(_dumps(value))
            continue
        try:
            flat.append(orjson.dumps(value).decode())
        except TypeError:
            flat.append(_dumps(value))
    return flat


#: The fields :func:`encode_new_job` always writes: every field of the record but the sparse
#: ones (a test keeps the three sets together).
NEW_JOB_FIELDS = (
    "v", "id", "type", "priority", "payload", "status",
    "attempts", "max_attempts", "timeout", "created_at",
)  # fmt: skip
_SCHEMA = str(JOB_SCHEMA_VERSION)
_STATUS_JSON = {status: f'"{status.value}"' for status in JobStatus}


def encode_new_job(job: Job) -> list[str]:
    """A new job's record as ``enqueue`` in ``_redis.lua`` takes it: the values of
    :data:`NEW_JOB_FIELDS` in their order (not their names: Lua has them), then the other
    fields that are set as ``field, value`` pairs; the same values as :func:`encode_job` with
    ``new``. Written out for what a submitted job has (a third of the generic loop's cost,
    which was the largest part of a batch's Python per job): a job with another field set than
    ``run_at`` and ``meta``, or a text orjson refuses, takes the generic path."""
    if (
        job.started_at is not None
        or job.completed_at is not None
        or job.worker_id is not None
        or job.result is not None
        or job.error is not None
        or job.progress is not None
        or job.errors
    ):
        return _new_record(encode_job(job, new=True))
    try:
        flat = [
            _SCHEMA,
            orjson.dumps(job.id).decode(),
            orjson.dumps(job.type).decode(),
            str(int(job.priority)),
            _dumps(job.payload),
            _STATUS_JSON[job.status],
            orjson.dumps(job.attempts).decode(),
            orjson.dumps(job.max_attempts).decode(),
            orjson.dumps(job.timeout).decode(),
            orjson.dumps(job.created_at).decode(),
        ]
        if job.run_at is not None:
            flat += ("run_at", orjson.dumps(job.run_at).decode())
        if job.meta:
            flat += ("meta", orjson.dumps(job.meta).decode())
    except TypeError:
        return _new_record(encode_job(job, new=True))
    return flat


def _new_record(flat: list[str]) -> list[str]:
    """:func:`encode_job`'s ``[field, value, ...]`` in :func:`encode_new_job`'s form."""
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    values = [fields.pop(name) for name in NEW_JOB_FIELDS]
    for name, value in fields.items():
        values += (name, value)
    return values


def new_record_fields(values: Sequence[str]) -> dict[str, str]:
    """The ``field: value`` pairs of :func:`encode_new_job`'s form (what the hash holds)."""
    count = len(NEW_JOB_FIELDS)
    rest = values[count:]
    return dict(zip(NEW_JOB_FIELDS, values[:count], strict=True)) | dict(
        zip(rest[::2], rest[1::2], strict=True)
    )


def read_record(values: Sequence[str | None]) -> tuple[dict[str, Any], str | None]:
    """The fields of a stored record (the values of :data:`RECORD_FIELDS`) that are JSON, and
    the problem with the first one that is not (``None`` if all are). A missing field of
    :data:`SPARSE_NULL` is null (see :func:`encode_job`)."""
    record: dict[str, Any] = {}
    problem: str | None = None
    for name, raw in zip(RECORD_FIELDS, values, strict=False):
        if raw is None:
            if name in SPARSE_NULL:
                record[name] = None
            continue
        try:
            record[name] = _loads(raw)
        except ValueError as exc:
            problem = problem or f"field {name!r} is not JSON ({exc}): {raw[:80]!r}"
    return record, problem


def decode_job(values: Sequence[str | None], job_id: str) -> Job | Corrupt | None:
    """Rebuild a job from the values of :data:`RECORD_FIELDS`; ``None`` if the hash is gone,
    :class:`Corrupt` if it does not decode."""
    if not values or all(raw is None for raw in values):
        return None
    record, problem = read_record(values)
    if problem is not None:
        return Corrupt(job_id, problem)
    return _decode(record, job_id)


def _decode(record: Any, job_id: str) -> Job | Corrupt:
    try:
        return job_from_record(record)
    except Exception as exc:  # InvalidValue, or anything a malformed record may cause
        return Corrupt(job_id, str(exc) or type(exc).__name__)


def decode_job_array(text: str, job_id: str) -> Job | Corrupt:
    """Rebuild a job from its record as one JSON array of the values of :data:`RECORD_FIELDS`
    (``record_json`` in ``_redis.lua``): one parse instead of one per field."""
    try:
        values = _loads(text)
    except ValueError:
        return Corrupt(job_id, "the record is not JSON")
    if not isinstance(values, list) or len(values) != len(RECORD_FIELDS):
        return Corrupt(job_id, "a field of the record is not one JSON value")
    return _decode(dict(zip(RECORD_FIELDS, values, strict=True)), job_id)


def wrong_type(job_id: str, kind: str) -> Corrupt:
    """The problem of a job key that holds another type than a hash."""
    return Corrupt(job_id, f"the job's key holds a {kind}, not a hash")


def parse_status(entry: str, job_id: str) -> JobStatus | Corrupt:
    """A stored status (JSON text), or :class:`Corrupt` if it is not one."""
    try:
        return JobStatus(_loads(entry))
    except (ValueError, TypeError):
        return Corrupt(job_id, f"field 'status' is not a job status: {entry[:80]!r}")


def encode_json(value: Any) -> str:
    """The compact JSON text of ``value`` (as stored in a job's hash)."""
    return _dumps(value)


def num(value: float) -> str:
    """A float as a string that loses no digit (Lua and Redis parse it as a number)."""
    return repr(float(value))


class Leased(NamedTuple):
    """One job handed out by :meth:`RedisScripts.fetch`, with its lease token."""

    token: str
    job: Job


class Leases(NamedTuple):
    """What leasing returned: ``taken`` has one entry per worker served, in order (a
    :class:`Corrupt` one is leased in Redis but must not reach the worker); ``strays`` are
    popped ids whose key is not a hash (no worker's turn), to quarantine."""

    taken: list[Leased | Corrupt]
    strays: list[Corrupt]

    def corrupt(self) -> list[Corrupt]:
        """Every record of this reply to quarantine."""
        return [*(c for c in self.taken if isinstance(c, Corrupt)), *self.strays]


NO_LEASES = Leases([], [])


def parse_leases(reply: Sequence[Any]) -> Leases:
    taken: list[Leased | Corrupt] = []
    strays: list[Corrupt] = []
    for i in range(0, len(reply), 3):
        token, job_id, text = str(reply[i]), str(reply[i + 1]), reply[i + 2]
        if text is None:
            strays.append(wrong_type(job_id, token))
            continue
        job = decode_job_array(text, job_id)
        taken.append(job if isinstance(job, Corrupt) else Leased(token, job))
    return Leases(taken, strays)


def ms(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


def node_view(info: dict[str, Any]) -> NodeView | None:
    """A node registry entry (written by the heartbeat), or ``None`` if it does not decode."""
    try:
        return NodeView(
            id=str(info["id"]),
            seen_at=float(info["seen_at"]),
            workers=tuple(WorkerStats(**w) for w in info["workers"]),
            counters={str(k): int(v) for k, v in info["counters"].items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
