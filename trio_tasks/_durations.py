"""Go-style durations: ``300ms``, ``1.5h``, ``2h45m``, ``1h30m45s`` or plain seconds."""

from __future__ import annotations

import re

from ._errors import InvalidValue

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_EXPECTED = "a duration like 300ms, 1.5h, 2h45m or a number of seconds"


def parse_duration(value: str | float | int, *, name: str = "duration") -> float:
    """Return ``value`` in seconds.

    Accepts Go's duration syntax (a sequence of decimal numbers with units ``ns``, ``us``, ``ms``,
    ``s``, ``m``, ``h``), or a plain number of seconds given as a number or a string. Negative
    durations are refused.

    Raises:
        InvalidValue: ``value`` is neither; the message names ``name`` and the bad value.
    """
    if isinstance(value, bool):
        raise InvalidValue(f"{name}: expected {_EXPECTED}, got {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int of more than 308 digits
            raise InvalidValue(
                f"{name}: expected a finite duration, got a {len(str(value))}-digit number"
            ) from None
    elif isinstance(value, str):
        seconds = _parse_text(value.strip(), name)
    else:
        raise InvalidValue(f"{name}: expected {_EXPECTED}, got {value!r}")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise InvalidValue(f"{name}: expected a finite duration, got {value!r}")
    if seconds < 0:
        raise InvalidValue(f"{name}: expected a duration >= 0, got {value!r}")
    return seconds


def _parse_text(text: str, name: str) -> float:
    if not text:
        raise InvalidValue(f"{name}: expected {_EXPECTED}, got an empty value")
    try:
        return float(text)
    except ValueError:
        pass
    original = text
    sign = 1.0
    if text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise InvalidValue(f"{name}: expected {_EXPECTED}, got {original!r}")
    return sign * total


def format_duration(seconds: float) -> str:
    """Format ``seconds`` as Go's ``time.Duration.String`` does: ``1h30m45s``, ``1.5s``, ``300ms``.

    Durations under a second use ``ms``/``µs``/``ns``; longer ones print hours and minutes only
    when they are non-zero, seconds always, with up to nine decimals and trailing zeros removed.
    """
    if seconds == 0:
        return "0s"
    negative = seconds < 0
    seconds = abs(seconds)
    nanos = round(seconds * 1e9)
    if nanos < 1_000_000_000:
        if nanos < 1_000:
            text = f"{nanos}ns"
        elif nanos < 1_000_000:
            text = f"{_trim(nanos / 1_000)}µs"
        else:
            text = f"{_trim(nanos / 1_000_000)}ms"
    else:
        hours, rest = divmod(nanos, 3_600_000_000_000)
        minutes, rest = divmod(rest, 60_000_000_000)
        secs = rest / 1e9
        text = ""
        if hours:
            text += f"{hours}h"
        if hours or minutes:
            text += f"{minutes}m"
        text += f"{_trim(secs)}s"
    return f"-{text}" if negative else text


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"
