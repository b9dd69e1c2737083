"""A validated job submission: what a caller asks for, before it becomes a :class:`Job`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from ._durations import parse_duration
from ._errors import InvalidValue
from ._job import EARLIEST_TIME, LATEST_TIME, Priority, parse_time

_FIELDS = frozenset(
    {"type", "priority", "payload", "timeout", "retries", "delay", "run_at", "job_id"}
)
_MAX_JOB_ID = 200


@attrs.frozen
class JobRequest:
    """One job to submit.

    ``timeout`` and ``delay`` are seconds, ``run_at`` POSIX seconds; ``None`` means "the default".
    ``job_id`` makes the submission idempotent: submitting an id that exists returns that job.
    Build one from JSON with :meth:`from_json`, which validates every field.
    """

    type: str = "default"
    payload: dict[str, Any] = attrs.field(factory=dict)
    priority: Priority = Priority.NORMAL
    timeout: float | None = None
    retries: int | None = None
    delay: float | None = None
    run_at: float | None = None
    job_id: str | None = None

    @classmethod
    def from_json(cls, data: object) -> JobRequest:
        """Validate a decoded JSON object (``POST /jobs`` body) and return the request.

        Raises:
            InvalidValue: not an object, an unknown field, or a field of the wrong type or range;
                the message names the field.
        """
        if not isinstance(data, Mapping):
            raise InvalidValue(f"a job must be a JSON object, got {json_kind(data)}")
        unknown = set(data) - _FIELDS
        if unknown:
            raise InvalidValue(
                f"unknown field(s) {', '.join(sorted(map(str, unknown)))}; "
                f"expected {', '.join(sorted(_FIELDS))}"
            )
        return cls.build(**data)

    @classmethod
    def build(
        cls,
        type: object = "default",
        payload: object = None,
        priority: object = None,
        timeout: object = None,
        retries: object = None,
        delay: object = None,
        run_at: object = None,
        job_id: object = None,
    ) -> JobRequest:
        """Validate loosely typed values (JSON, query strings, keyword arguments) into a request.

        Durations accept Go syntax or seconds; ``run_at`` accepts RFC 3339 or POSIX seconds.

        Raises:
            InvalidValue: a value of the wrong type or range; the message names the field.
        """
        if not isinstance(type, str) or not type.strip():
            raise InvalidValue(f"type: expected a non-empty string, got {json_kind(type)}")
        if payload is None:
            payload = {}
        elif not isinstance(payload, dict):
            raise InvalidValue(f"payload: expected a JSON object, got {json_kind(payload)}")
        prio = Priority.NORMAL if priority is None else Priority.parse(priority)
        timeout_s = None
        if timeout is not None:
            timeout_s = parse_duration(_duration_input(timeout, "timeout"), name="timeout")
            if timeout_s <= 0:
                raise InvalidValue(f"timeout: expected a duration > 0, got {timeout!r}")
        if retries is not None:
            if isinstance(retries, str) and retries.strip().isdigit():
                retries = int(retries)
            if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
                raise InvalidValue(f"retries: expected an integer >= 0, got {retries!r}")
        delay_s = None
        if delay is not None:
            delay_s = parse_duration(_duration_input(delay, "delay"), name="delay")
            if time.time() + delay_s > LATEST_TIME:
                raise InvalidValue(
                    f"delay: expected a duration ending before the year 10000, got {delay!r}"
                )
        run_at_s = None
        if run_at is not None:
            if delay is not None:
                raise InvalidValue("give either delay or run_at, not both")
            if isinstance(run_at, str):
                run_at_s = parse_time(run_at, name="run_at")
            elif isinstance(run_at, int | float) and not isinstance(run_at, bool):
                run_at_s = float(run_at)
            else:
                raise InvalidValue(
                    f"run_at: expected an RFC 3339 timestamp or POSIX seconds, got {run_at!r}"
                )
            if not EARLIEST_TIME <= run_at_s <= LATEST_TIME:
                raise InvalidValue(
                    "run_at: expected a time from 0001-01-01T00:00:00Z to "
                    f"9999-12-31T23:59:59Z, got {run_at!r}"
                )
        if job_id is not None and (
            not isinstance(job_id, str)
            or not job_id.strip()
            or len(job_id) > _MAX_JOB_ID
            or "/" in job_id
        ):
            raise InvalidValue(
                f"job_id: expected a non-empty string of at most {_MAX_JOB_ID} characters "
                f"without '/', got {job_id!r}"
            )
        return cls(
            type=type,
            payload=payload,
            priority=prio,
            timeout=timeout_s,
            retries=retries,
            delay=delay_s,
            run_at=run_at_s,
            job_id=job_id,
        )


def new_job_id() -> str:
    """Return a fresh job id (a UUID4 string)."""
    return str(uuid.uuid4())


def _duration_input(value: object, name: str) -> str | float:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return value
    raise InvalidValue(f"{name}: expected a duration string or seconds, got {json_kind(value)}")


def json_kind(value: object, *, with_value: bool = True) -> str:
    """Name the JSON type of ``value`` for an error message: ``an object``, ``a string ('x')``.

    ``with_value`` adds scalars' values in parentheses.
    """
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    for kind, name in names.items():
        if isinstance(value, kind):
            if kind is list and not value:
                return "an empty array"
            return f"{name} ({value!r})" if with_value and kind in (str, bool) else name
    if isinstance(value, int | float):
        return f"a number ({value!r})" if with_value else "a number"
    return type(value).__name__
