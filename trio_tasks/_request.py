"""A validated job submission: what a caller asks for, before it becomes a :class:`Job`."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any, TypeGuard

import attrs

from ._durations import parse_duration
from ._errors import InvalidValue
from ._job import EARLIEST_TIME, Priority, parse_time

_FIELDS = frozenset(
    {"type", "priority", "payload", "timeout", "retries", "delay", "run_at", "job_id"}
)
#: Longest job id and job type name, in characters.
MAX_NAME_LENGTH = 200
#: Upper bounds of a submission: a job's timeout, its retries, and how far ahead it may be
#: scheduled (``delay``, or ``run_at`` from now). They keep every job finishable and stop a
#: client from parking jobs for ever.
MAX_TIMEOUT = 7 * 24 * 3600.0
MAX_RETRIES = 100
MAX_DELAY = 366 * 24 * 3600.0


def valid_name(value: object) -> TypeGuard[str]:
    """Whether ``value`` can be a job id or a job type: a non-blank string of at most
    :data:`MAX_NAME_LENGTH` printable characters (no control characters, no lone surrogates,
    which no log line or Redis key could hold)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_NAME_LENGTH
        and value.isprintable()
        and not value.isspace()
    )


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
        if not valid_name(type):
            raise InvalidValue(
                f"type: expected a non-empty string of at most {MAX_NAME_LENGTH} printable "
                f"characters, got {json_kind(type)}"
            )
        if payload is None:
            payload = {}
        elif not isinstance(payload, dict):
            raise InvalidValue(f"payload: expected a JSON object, got {json_kind(payload)}")
        prio = Priority.NORMAL if priority is None else Priority.parse(priority)
        timeout_s = None
        if timeout is not None:
            timeout_s = parse_duration(_duration_input(timeout, "timeout"), name="timeout")
            if not 0 < timeout_s <= MAX_TIMEOUT:
                raise InvalidValue(
                    f"timeout: expected a duration > 0 and at most {_MAX_TIMEOUT_TEXT}, "
                    f"got {_shown(timeout)}"
                )
        if retries is not None:
            if isinstance(retries, str) and retries.strip().isdecimal() and len(retries) < 8:
                retries = int(retries)
            if (
                not isinstance(retries, int)
                or isinstance(retries, bool)
                or not 0 <= retries <= MAX_RETRIES
            ):
                raise InvalidValue(
                    f"retries: expected an integer from 0 to {MAX_RETRIES}, got {_shown(retries)}"
                )
        delay_s = None
        if delay is not None:
            delay_s = parse_duration(_duration_input(delay, "delay"), name="delay")
            if delay_s > MAX_DELAY:
                raise InvalidValue(
                    f"delay: expected a duration of at most {_MAX_DELAY_TEXT}, got {_shown(delay)}"
                )
        run_at_s = None
        if run_at is not None:
            if delay is not None:
                raise InvalidValue("give either delay or run_at, not both")
            if isinstance(run_at, str):
                run_at_s = parse_time(run_at, name="run_at")
            elif isinstance(run_at, int | float) and not isinstance(run_at, bool):
                run_at_s = float(run_at) if abs(run_at) < 1e300 else float("inf")
            else:
                raise InvalidValue(
                    f"run_at: expected an RFC 3339 timestamp or POSIX seconds, got {run_at!r}"
                )
            if not EARLIEST_TIME <= run_at_s <= time.time() + MAX_DELAY:
                raise InvalidValue(
                    "run_at: expected a time from 0001-01-01T00:00:00Z to at most "
                    f"{_MAX_DELAY_TEXT} from now, got {_shown(run_at)}"
                )
        if job_id is not None and (not valid_name(job_id) or "/" in job_id):
            raise InvalidValue(
                f"job_id: expected a non-empty string of at most {MAX_NAME_LENGTH} printable "
                f"characters without '/', got {_shown(job_id)}"
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


_MAX_TIMEOUT_TEXT = "7 days (168h)"
_MAX_DELAY_TEXT = "366 days (8784h)"


def _shown(value: object) -> str:
    # A value as a message shows it: its repr, cut short (a client may send megabytes).
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}… ({len(text)} characters)"


def new_job_id() -> str:
    """Return a fresh job id (a UUID4 string: what ``str(uuid.uuid4())`` gives, in a third of
    its time, which counted on every submission)."""
    h = os.urandom(16).hex()
    # The version nibble is 4; the variant's two high bits are 10 (RFC 4122).
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_VARIANT = "89ab"


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
