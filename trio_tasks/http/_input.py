"""Reading requests: query parameters, durations, limits and JSON bodies, refused with a
message that names the bad value (400) rather than ever raising anything else.

A body is decoded by :mod:`json`'s C scanner, which holds the GIL for the whole body: 30-55 ms
for a megabyte of tiny values (``[[],[],…]``), during which no other request is served. So a
large body's values are counted first, from its bytes (a few C passes: about 2-7 ms for 1 MiB),
and one with more than :data:`MAX_JSON_VALUES` is refused before any object is built; what is
decoded then takes a few milliseconds at most. Large bodies are read in a worker thread, so that
the checks written in Python give the event loop its turns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import trio

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
#: Most JSON values (objects, arrays, strings, numbers, literals) in one request body: bounds
#: the work that every later copy, encoding and decoding of the jobs it holds can cost.
MAX_JSON_VALUES = 50_000
#: Largest body decoded on the event loop itself; larger ones go to a worker thread.
INLINE_JSON_BYTES = 16_384
#: Most items of one ``POST /jobs/batch``, checked before any item is looked at.
MAX_BATCH = 1000

SUBMIT_PARAMS = frozenset(
    {"type", "priority", "timeout", "retries", "delay", "run_at", "job_id"}
)  # payload only comes in a JSON body
LIST_PARAMS = frozenset({"status", "type", "limit"})
GET_PARAMS = frozenset({"wait"})
#: The filters of ``POST /jobs/retry``.
RETRY_PARAMS = frozenset({"type", "since"})


def params(
    args: Mapping[str, str],
    known: frozenset[str],
    ignored: Callable[[list[str]], None] | None = None,
) -> dict[str, str]:
    """The query parameters ``args`` named in ``known``; empty values dropped.

    Others are ignored, as the seed ignores them (``&source=cli``): ``ignored`` is told
    their names.
    """
    given: dict[str, str] = {}
    unknown: list[str] = []
    for name, value in args.items():
        if name not in known:
            unknown.append(name)
        elif value != "":
            # An empty value means "not given", as in the seed (``?type=`` submits "default").
            given[name] = value
    if unknown and ignored is not None:
        ignored(unknown)
    return given


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
    # isdecimal and a length bound before int(): "²" is a digit int() refuses, and a number of
    # thousands of digits is refused by int() itself.
    if not (text.isdecimal() and len(text) <= 6) or not 1 <= int(text) <= MAX_LIST_LIMIT:
        raise InvalidValue(f"limit: expected an integer from 1 to {MAX_LIST_LIMIT}, got {raw!r}")
    return int(text)


def _reject_constant(name: str) -> Any:
    raise InvalidValue(f"malformed JSON: {name} is not valid JSON")


async def read_json(body: bytes, limiter: trio.CapacityLimiter) -> Any:
    """Decode a request body (see :func:`parse_json`); one larger than
    :data:`INLINE_JSON_BYTES` in a worker thread of ``limiter``, so that the event loop is
    never held for more than a moment."""
    if len(body) <= INLINE_JSON_BYTES:
        return parse_json(body)
    return await trio.to_thread.run_sync(parse_json, body, limiter=limiter)


def parse_json(body: bytes) -> Any:
    """Decode a request body: strict JSON (no ``NaN``), UTF-8, at most :data:`MAX_JSON_DEPTH`
    levels deep and :data:`MAX_JSON_VALUES` values.

    Raises:
        InvalidValue: anything else, with what is wrong and where.
    """
    if not body:
        raise InvalidValue("malformed JSON: the body is empty")
    if len(body) > INLINE_JSON_BYTES and _values_at_most(body) > MAX_JSON_VALUES:
        raise InvalidValue(_TOO_MANY)
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
    except ValueError as exc:
        # int() refuses numbers of more than 4300 digits (sys.get_int_max_str_digits).
        raise InvalidValue(f"malformed JSON: {exc}") from None
    # Each level takes two bytes ("[]"): a short body cannot be too deep, and most are short;
    # a body of INLINE_JSON_BYTES cannot hold MAX_JSON_VALUES values.
    if len(body) > 2 * MAX_JSON_DEPTH:
        _check_shape(data)
    return data


_TOO_DEEP = f"malformed JSON: nested too deeply (at most {MAX_JSON_DEPTH} levels)"
_TOO_MANY = f"the body holds more than {MAX_JSON_VALUES} JSON values"


def _values_at_most(body: bytes) -> int:
    # How many values the body can hold: each value but the first follows a comma or opens a
    # container, outside strings. Strings are cut out by splitting on quotes once escaped
    # backslashes and escaped quotes are gone (in valid JSON the pieces alternate outside,
    # inside). Every step is one C call over the bytes; nothing is decoded.
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(plain.split(b'"')[::2])
    return outside.count(b",") + outside.count(b"[") + outside.count(b"{") + 1


def _check_shape(data: Any) -> None:
    # Iterative: the point is to refuse what recursion could not handle later.
    stack: list[tuple[Any, int]] = [(data, 1)] if isinstance(data, dict | list) else []
    values = 1
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidValue(_TOO_DEEP)
        children = value.values() if isinstance(value, dict) else value
        values += len(children)
        if values > MAX_JSON_VALUES:
            raise InvalidValue(_TOO_MANY)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def kind(value: object) -> str:
    """What a JSON value is, for messages ("a list", "a string")."""
    return json_kind(value, with_value=False)
