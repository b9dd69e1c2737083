"""Logging setup: structlog JSON lines on stdout (or console lines for people), one pipeline for
trio-tasks, the standard library (Quart, warnings) and hypercorn.

Every line is one JSON object whose first keys are ``time`` (RFC 3339, UTC), ``level`` and
``msg``; the fields of the event follow. :func:`configure_logging` must run before a
:class:`~trio_tasks.Processor` is created, because the processor decides once, at
construction, which levels it will log.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from ._json_log import (
    JsonLogger,
    LineWriterFactory,
    escape_surrogates,
    json_line,
    use,
)
from ._secrets import mask_secrets

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
    processors: list[Any]
    if fmt == "console":
        # The console renderer puts a "timestamp" key first.
        processors = [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=_isatty(out)),
            escape_surrogates,
            mask_secrets,
        ]
    else:
        # One processor does it all: each line at info (one per finished job) is on the
        # workers' hot path, and a chain of six processors cost twice as much per line.
        processors = [json_line]
    factory = LineWriterFactory(out)
    use(JsonLogger(factory.writer, min_level) if fmt != "console" else None)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=factory,
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


def log_enabled(logger: Any, level: int) -> bool:
    """Whether ``logger`` (structlog's, possibly a lazy proxy) emits at ``level``: checked once
    by hot paths so that lines below the level cost nothing."""
    check = getattr(logger, "is_enabled_for", None)
    if check is None:
        # structlog's lazy proxy: resolve it to see whether the configured wrapper filters.
        bind = getattr(logger, "bind", None)
        check = getattr(bind(), "is_enabled_for", None) if bind else None
    return bool(check(level)) if check is not None else True
