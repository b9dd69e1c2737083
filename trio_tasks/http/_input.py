"""Reading requests: query parameters, durations, limits and JSON bodies, refused with a
message that names the bad value (400) rather than ever raising anything else."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .._durations import format_duration, parse_duration
from .._errors import InvalidValue
from .._request import json_kind

#: Longest ``GET /jobs/{id}?wait=`` a client may ask for.
MAX_WAIT = 60.0
#: Default and largest ``limit`` of ``GET /jobs``.
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
#: Deepest nesting of a request body (the body itself is level 1). Deeper payloads used to be
#: admitted and then break every answer containing them (``GET /jobs`` answered 500), because
#: encoding a record nests a few levels deeper than decoding the body did.
MAX_JSON_DEPTH = 100

SUBMIT_PARAMS = frozenset(
    {"type", "priority", "timeout", "retries", "delay", "run_at", "job_id"}
)  # payload only comes in a JSON body
LIST_PARAMS = frozenset({"status", "type", "limit"})
GET_PARAMS = frozenset({"wait"})


def params(args: Mapping[str, str], known: frozenset[str]) -> dict[str, str]:
    """The query parameters ``args``, refusing any not in ``known``; empty values dropped."""
    unknown = [name for name in args if name not in known]
    if unknown:
        raise InvalidValue(
            f"unknown query parameter(s) {', '.join(sorted(unknown))}; "
            f"expected {', '.join(sorted(known))}"
        )
    # An empty value means "not given", as in the seed (``?type=`` submits a "default" job).
    return {name: value for name, value in args.items() if value != ""}


def wait_seconds(raw: str | None) -> float | None:
    """The ``wait`` parameter of ``GET /jobs/{id}`` in seconds (at most :data:`MAX_WAIT`)."""
    if raw is None:
        return None
    seconds = parse_duration(raw, name="wait")
    if seconds > MAX_WAIT:
        raise InvalidValue(f"wait: expected at most {format_duration(MAX_WAIT)}, got {raw!r}")
    return seconds


def list_limit(raw: str | None) -> int:
    """The ``limit`` parameter of ``GET /jobs``."""
    if raw is None:
        return DEFAULT_LIST_LIMIT
    text = raw.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIST_LIMIT:
        raise InvalidValue(f"limit: expected an integer from 1 to {MAX_LIST_LIMIT}, got {raw!r}")
    return int(text)


def _reject_constant(name: str) -> Any:
    raise InvalidValue(f"malformed JSON: {name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """Decode a request body: strict JSON (no ``NaN``), UTF-8, at most :data:`MAX_JSON_DEPTH`
    levels deep."""
    if not body:
        raise InvalidValue("malformed JSON: the body is empty")
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidValue(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except UnicodeDecodeError:
        raise InvalidValue("malformed JSON: the body is not UTF-8 text") from None
    except RecursionError:
        raise InvalidValue(_TOO_DEEP) from None
    # Each level takes two bytes ("[]"): a short body cannot be too deep, and most are short.
    if len(body) > 2 * MAX_JSON_DEPTH and _too_deep(data):
        raise InvalidValue(_TOO_DEEP)
    return data


_TOO_DEEP = f"malformed JSON: nested too deeply (at most {MAX_JSON_DEPTH} levels)"


def _too_deep(data: Any) -> bool:
    # Iterative: the point is to refuse what recursion could not handle later.
    stack: list[tuple[Any, int]] = [(data, 1)] if isinstance(data, dict | list) else []
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def kind(value: object) -> str:
    """What a JSON value is, for messages ("a list", "a string")."""
    return json_kind(value, with_value=False)
