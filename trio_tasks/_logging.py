"""Logging setup: structlog JSON lines on stdout (or console lines for people), one pipeline for
trio-tasks, the standard library (Quart, warnings) and hypercorn.

Every line is one JSON object whose first keys are ``time`` (RFC 3339, UTC), ``level`` and
``msg``; the fields of the event follow. :func:`configure_logging` must run before a
:class:`~trio_tasks.Processor` is created, because the processor decides once, at
construction, which levels it will log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any, TextIO
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import structlog
from hypercorn.logging import Logger as _HypercornBaseLogger

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def configure_logging(level: str = "info", fmt: str = "json", file: TextIO | None = None) -> None:
    """Route every log line of the process through structlog.

    ``level`` is a name (``debug`` … ``critical``); ``fmt`` is ``json`` (one object per line,
    for machines) or ``console`` (aligned, coloured when ``file`` is a terminal, for people).
    ``file`` defaults to ``sys.stdout``; each line is flushed as it is written, so a supervisor
    reading a pipe sees it at once.

    Standard-library loggers (Quart's, Python warnings) are sent into the same pipeline.
    """
    out = file if file is not None else sys.stdout
    min_level = _LEVELS[level]
    renderer: Any
    if fmt == "console":
        # The console renderer puts a "timestamp" key first.
        renderer, time_key = structlog.dev.ConsoleRenderer(colors=_isatty(out)), "timestamp"
    else:
        renderer, time_key = _render_json, "time"
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key=time_key),
            structlog.processors.format_exc_info,
            renderer,
            _escape_surrogates,
            _mask_secrets,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_StructlogHandler())
    root.setLevel(min_level)
    logging.captureWarnings(True)


def _isatty(file: TextIO) -> bool:
    isatty = getattr(file, "isatty", None)
    return bool(isatty()) if isatty is not None else False


def _render_json(_logger: Any, _method: str, event: dict[str, Any]) -> str:
    # One processor renames ``event`` to ``msg`` and puts time, level, msg first: the order a
    # person scanning raw lines expects, at the cost of one dict rebuild per line.
    line = {
        "time": event.pop("time", None),
        "level": event.pop("level", None),
        "msg": event.pop("event", None),
    }
    line.update(event)
    return _encode(line)


# Built once: json.dumps() with options builds a new encoder on every call.
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode


def _escape_surrogates(_logger: Any, _method: str, rendered: Any) -> Any:
    # The last processor: ``rendered`` is the renderer's line (typed Any, as structlog types a
    # processor's input as an event dict). A lone surrogate in it (a client's job id "x\ud800",
    # a handler's error message) cannot be written as UTF-8: the write would raise in the task
    # that logs, a worker, and take the node down. Escaped as \ud800 it stays valid JSON. Most
    # lines are ASCII and pass at the cost of one scan.
    line: str = rendered
    if line.isascii():
        return line
    return line.encode("utf-8", "backslashreplace").decode("utf-8")


# -- secrets --------------------------------------------------------------------------------

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


def _mask_secrets(_logger: Any, _method: str, rendered: Any) -> Any:
    # After rendering: whatever the line holds (an error message quoting a URL, a traceback),
    # no registered secret is written. Without secrets, one test of an empty set.
    return redact(rendered) if _secrets else rendered


class _StructlogHandler(logging.Handler):
    """Sends standard-library log records into structlog, keeping the logger's name."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed %-format must not lose the line
            message = str(record.msg)
        fields: dict[str, Any] = {"logger": record.name}
        if record.exc_info and record.exc_info[0] is not None:
            fields["exc_info"] = record.exc_info
        structlog.get_logger(record.name).log(record.levelno, message, **fields)


class HypercornLogger(_HypercornBaseLogger):
    """hypercorn's logger, writing through structlog instead of its own stream handlers.

    Error-log messages keep their level; each request's access line is logged at ``debug``
    (``http request`` with method, path, status and duration), so the default ``info`` level
    costs nothing per request.
    """

    def __init__(self, config: Any) -> None:
        # The base class would create stdout/stderr handlers; everything goes to structlog.
        self.access_log_format = config.access_log_format
        self.access_logger = None
        self.error_logger = None
        self._log: Any = structlog.get_logger("hypercorn").bind(logger="hypercorn")
        self._access = log_enabled(self._log, logging.DEBUG)

    async def access(self, request: Any, response: Any, request_time: float) -> None:
        # hypercorn also reports each completed request once without its response (the stream
        # closes before it marks the response sent); only the line with the status is kept.
        if self._access and response is not None:
            self._log.debug(
                "http request",
                method=request.get("method", "GET"),
                path=request.get("path"),
                status=response.get("status"),
                duration=round(request_time, 6),
                client=_client(request.get("client")),
            )

    async def critical(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log.critical(_format(message, args), **_exc(kwargs))

    async def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log.error(_format(message, args), **_exc(kwargs))

    async def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log.warning(_format(message, args), **_exc(kwargs))

    async def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log.info(_format(message, args), **_exc(kwargs))

    async def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log.debug(_format(message, args), **_exc(kwargs))

    async def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log.error(_format(message, args), exc_info=True)

    async def log(self, level: int, message: str, *args: Any, **kwargs: Any) -> None:
        self._log.log(level, _format(message, args), **_exc(kwargs))


def _format(message: str, args: tuple[Any, ...]) -> str:
    if not args:
        return message
    try:
        return message % args
    except (TypeError, ValueError):
        return f"{message} {args!r}"


def _exc(kwargs: dict[str, Any]) -> dict[str, Any]:
    exc_info = kwargs.get("exc_info")
    return {"exc_info": exc_info} if exc_info else {}


def _client(client: Any) -> str | None:
    if not client:
        return None
    return ":".join(str(part) for part in client)


def log_enabled(logger: Any, level: int) -> bool:
    """Whether ``logger`` (structlog's, possibly a lazy proxy) emits at ``level``: checked once
    by hot paths so that lines below the level cost nothing."""
    check = getattr(logger, "is_enabled_for", None)
    if check is None:
        # structlog's lazy proxy: resolve it to see whether the configured wrapper filters.
        bind = getattr(logger, "bind", None)
        check = getattr(bind(), "is_enabled_for", None) if bind else None
    return bool(check(level)) if check is not None else True
