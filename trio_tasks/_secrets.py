"""Secrets kept out of every log line and error message: passwords in URLs, API tokens.

The CLI registers them once (:func:`add_secrets`) from the settings; every rendered log line
passes through :func:`redact`.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

#: Query parameters of a broker URL whose values are secrets.
SECRET_PARAMS = frozenset({"password", "sentinel_password", "pass", "secret", "token"})
#: Secrets shorter than this are masked in URLs only: masking them in free text would garble it.
_MIN_MASKED = 4
_secrets: set[str] = set()


def url_secrets(url: str) -> list[str]:
    """The secrets written in ``url``: the password of its user-info and the values of its
    :data:`SECRET_PARAMS`, as written and decoded."""
    parts = urlsplit(url)
    found: list[str] = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name.lower() in SECRET_PARAMS:
            found.append(value)
            found.append(quote(value, safe=""))
    found += [unquote(f) for f in found]
    return [f for f in dict.fromkeys(found) if f]


def redact_url(url: str) -> str:
    """``url`` with the password of its user-info and its secret query values as ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:***@{hosts}"
    return scheme + sep + authority + _SECRET_QUERY.sub(r"\1***", tail)


_SECRET_QUERY = re.compile(r"(?i)([?&](?:" + "|".join(sorted(SECRET_PARAMS)) + r")=)[^&#]*")


def add_secrets(*values: str | None) -> None:
    """Mask ``values`` (and their JSON-escaped forms) as ``***`` in every log line from now on,
    and in :func:`redact`."""
    for value in values:
        if value and len(value) >= _MIN_MASKED:
            _secrets.add(value)
            _secrets.add(json.dumps(value)[1:-1])


def redact(text: str) -> str:
    """``text`` with every secret given to :func:`add_secrets` as ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def mask_secrets(_logger: Any, _method: str, rendered: Any) -> Any:
    """A structlog processor after rendering: the line with every registered secret as ``***``."""
    # After rendering: whatever the line holds (an error message quoting a URL, a traceback),
    # no registered secret is written. Without secrets, one test of an empty set.
    return redact(rendered) if _secrets else rendered
