"""JSON log lines made cheaply: one per finished job is on the workers' hot path.

:func:`json_line` is the whole JSON pipeline in one structlog processor; :class:`JsonLogger` is
what trio-tasks logs through when :func:`~trio_tasks.configure_logging` set up JSON lines (it
renders without structlog's processor chain, same output); :class:`_LineWriter` writes lines,
buffered while :func:`flush_logs_periodically` runs. None of it imports structlog (a worker
starts without it) until a line carries an exception to format.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any, TextIO

import orjson
import trio

from ._secrets import redact


def json_line(logger: Any, method: str, event: dict[str, Any]) -> str:
    """The whole JSON pipeline in one processor: level, time, ``msg`` first, exception text,
    rendering (orjson; the standard library's encoder for what orjson refuses), secrets."""
    if "exc_info" in event:
        import structlog  # a line with a traceback: rare enough to import it then

        event = dict(structlog.processors.format_exc_info(logger, method, event))
    line = {
        "time": _utc_now(),
        "level": _METHOD_LEVELS.get(method, method),
        "msg": event.pop("event", None),
    }
    line.update(event)
    try:
        rendered = orjson.dumps(line, default=str).decode()
    except TypeError:
        # A lone surrogate (a client's job id "x\ud800", a handler's error message) or an
        # integer beyond 64 bits: the standard encoder writes both; the surrogate is escaped
        # so the line stays valid UTF-8 (writing it raw would raise in the task that logs).
        rendered = escape_surrogates(logger, method, _encode(line))
    return redact(rendered)


# Built once: json.dumps() with options builds a new encoder on every call.
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode
_METHOD_LEVELS = {"exception": "error", "warn": "warning", "msg": "info"}
_second: list[Any] = [None, ""]


def _utc_now() -> str:
    """RFC 3339 UTC time with microseconds; the part up to the second is formatted once per
    second (a datetime per line cost more than the rest of the line)."""
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second[0], _second[1] = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{_second[1]}.{int((now - whole) * 1e6):06d}Z"


def escape_surrogates(_logger: Any, _method: str, rendered: Any) -> Any:
    """A structlog processor after rendering: lone surrogates escaped as ``\\udXXX``."""
    # The last processor: ``rendered`` is the renderer's line (typed Any, as structlog types a
    # processor's input as an event dict). A lone surrogate in it (a client's job id "x\ud800",
    # a handler's error message) cannot be written as UTF-8: the write would raise in the task
    # that logs, a worker, and take the node down. Escaped as \ud800 it stays valid JSON. Most
    # lines are ASCII and pass at the cost of one scan.
    line: str = rendered
    if line.isascii():
        return line
    return line.encode("utf-8", "backslashreplace").decode("utf-8")


class _LineWriter:
    """Writes rendered lines to a text file: at once (flushed) by default; while
    :func:`flush_logs_periodically` runs, lines below warning are buffered and flushed by it.

    One line per finished job at info was a write system call per job: a fifth of a no-op job's
    cost. Warnings and errors are always flushed at once.
    """

    def __init__(self, file: TextIO) -> None:
        self._file = file
        # Handlers in threads log too; the lock keeps lines whole (structlog's own writer has one).
        self._lock = threading.Lock()
        self.buffered = False
        self.pending = False

    def _buffer(self, message: str) -> None:
        with self._lock:
            self._file.write(message + "\n")
            if self.buffered:
                self.pending = True
            else:
                self._file.flush()

    def _flush_now(self, message: str) -> None:
        with self._lock:
            self._file.write(message + "\n")
            self._file.flush()
            self.pending = False

    def flush(self) -> None:
        """Flush what is buffered."""
        with self._lock:
            if self.pending:
                self.pending = False
                self._file.flush()

    debug = info = msg = log = _buffer
    warning = warn = error = err = critical = exception = fatal = failure = _flush_now


class LineWriterFactory:
    """structlog's logger factory for :class:`_LineWriter`; the last one made is the one
    :func:`flush_logs_periodically` flushes."""

    def __init__(self, file: TextIO) -> None:
        self.writer = _LineWriter(file)
        global _writer
        _writer = self.writer

    def __call__(self, *_args: Any) -> _LineWriter:
        return self.writer


_writer: _LineWriter | None = None


async def flush_logs_periodically(interval: float = 0.05) -> None:
    """Buffer log lines below warning and flush them every ``interval`` seconds, until
    cancelled (then flush what is left and write at once again). ``serve`` and ``worker`` run
    it; without it (embedded, tests) every line is flushed as it is written."""
    writer = _writer
    if writer is None:
        return
    writer.buffered = True
    try:
        while True:
            await trio.sleep(interval)
            writer.flush()
    finally:
        writer.buffered = False
        writer.flush()


class JsonLogger:
    """A logger with structlog's filtering bound logger's methods, rendering with
    :func:`json_line` straight into the configured writer: the same lines as structlog's
    pipeline at a third of the cost. :func:`~trio_tasks._log.library_logger` hands it out when
    :func:`~trio_tasks.configure_logging` chose JSON lines."""

    __slots__ = ("_context", "_level", "_writer")

    def __init__(self, writer: _LineWriter, level: int, context: dict[str, Any] | None = None):
        self._writer = writer
        self._level = level
        self._context = context or {}

    def is_enabled_for(self, level: int) -> bool:
        """Whether lines at ``level`` are written."""
        return level >= self._level

    def bind(self, **fields: Any) -> JsonLogger:
        """A logger that adds ``fields`` to every line."""
        return JsonLogger(self._writer, self._level, {**self._context, **fields})

    def new(self, **fields: Any) -> JsonLogger:
        """A logger with only ``fields`` bound."""
        return JsonLogger(self._writer, self._level, dict(fields))

    def unbind(self, *keys: str) -> JsonLogger:
        """A logger without ``keys``."""
        return JsonLogger(
            self._writer, self._level, {k: v for k, v in self._context.items() if k not in keys}
        )

    try_unbind = unbind

    def _emit(self, method: str, event: Any, args: tuple[Any, ...], fields: dict[str, Any]) -> None:
        if args:
            event = str(event) % args
        if self._context:
            fields = {**self._context, **fields}
        fields["event"] = event
        getattr(self._writer, method)(json_line(None, method, fields))

    def debug(self, event: Any = None, *args: Any, **fields: Any) -> None:
        """Log at debug."""
        if self._level <= logging.DEBUG:
            self._emit("debug", event, args, fields)

    def info(self, event: Any = None, *args: Any, **fields: Any) -> None:
        """Log at info."""
        if self._level <= logging.INFO:
            self._emit("info", event, args, fields)

    def warning(self, event: Any = None, *args: Any, **fields: Any) -> None:
        """Log at warning."""
        if self._level <= logging.WARNING:
            self._emit("warning", event, args, fields)

    warn = warning

    def error(self, event: Any = None, *args: Any, **fields: Any) -> None:
        """Log at error."""
        if self._level <= logging.ERROR:
            self._emit("error", event, args, fields)

    def exception(self, event: Any = None, *args: Any, **fields: Any) -> None:
        """Log at error with the exception being handled."""
        if self._level <= logging.ERROR:
            fields.setdefault("exc_info", True)
            self._emit("error", event, args, fields)

    def critical(self, event: Any = None, *args: Any, **fields: Any) -> None:
        """Log at critical."""
        if self._level <= logging.CRITICAL:
            self._emit("critical", event, args, fields)

    fatal = critical

    def log(self, level: int, event: Any = None, *args: Any, **fields: Any) -> None:
        """Log at ``level`` (a :mod:`logging` level number)."""
        if level >= self._level:
            self._emit(_LEVEL_NAMES.get(level, "info"), event, args, fields)

    msg = info


_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}
#: Set by configure_logging when it chose JSON lines: what library_logger() hands out.
_configured: JsonLogger | None = None


def configured_logger() -> JsonLogger | None:
    """The :class:`JsonLogger` of the last :func:`~trio_tasks.configure_logging` that chose
    JSON lines and is still structlog's configuration, else ``None``."""
    logger = _configured
    if logger is None:
        return None
    structlog = sys.modules.get("structlog")
    # Not imported: nobody configured it otherwise since (configure_logging configures it
    # when it is first imported, see _logging.py).
    if structlog is not None and structlog.get_config()["processors"] != [json_line]:
        return None
    return logger


def use(logger: JsonLogger | None) -> None:
    """Make ``logger`` the one :func:`configured_logger` returns (``None``: structlog's)."""
    global _configured
    _configured = logger
