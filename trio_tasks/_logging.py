"""Logging setup: structlog JSON lines on stdout (or console lines for people), one pipeline for
trio-tasks, the standard library (Quart, warnings) and hypercorn.

Every line is one JSON object whose first keys are ``time`` (RFC 3339, UTC), ``level`` and
``msg``; the fields of the event follow. :func:`configure_logging` must run before a
:class:`~trio_tasks.Processor` is created, because the processor decides once, at
construction, which levels it will log.

JSON lines need none of structlog (:class:`~._json_log.JsonLogger` renders them), and importing
it is a third of a worker's start-up: so with ``fmt="json"`` structlog is configured at once if
it was imported already, else the moment it is first imported (a handler's module, a lazy
import: :class:`_ConfigureOnImport`). Whoever uses structlog gets the same pipeline as before.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, TextIO

from ._json_log import (
    JsonLogger,
    LineWriterFactory,
    configured_logger,
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
    factory = LineWriterFactory(out)
    use(JsonLogger(factory.writer, min_level) if fmt != "console" else None)
    _ConfigureOnImport.cancel()

    def configure(structlog: Any) -> None:
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
        structlog.configure(
            processors=processors,
            wrapper_class=structlog.make_filtering_bound_logger(min_level),
            logger_factory=factory,
            cache_logger_on_first_use=True,
        )

    imported = sys.modules.get("structlog")
    if imported is not None or fmt == "console":
        import structlog

        configure(structlog)
    else:
        _ConfigureOnImport.install(configure)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_StructlogHandler())
    root.setLevel(min_level)
    logging.captureWarnings(True)


def _isatty(file: TextIO) -> bool:
    isatty = getattr(file, "isatty", None)
    return bool(isatty()) if isatty is not None else False


class _ConfigureOnImport:
    """A finder on ``sys.meta_path`` that configures structlog right after its first import
    (then leaves ``sys.meta_path``): :func:`configure_logging` without importing structlog."""

    pending: _ConfigureOnImport | None = None

    def __init__(self, configure: Callable[[Any], None]) -> None:
        self._configure = configure

    @classmethod
    def install(cls, configure: Callable[[Any], None]) -> None:
        """Configure structlog with ``configure`` when it is first imported."""
        cls.cancel()
        cls.pending = cls(configure)
        sys.meta_path.insert(0, cls.pending)

    @classmethod
    def cancel(cls) -> None:
        """Forget the pending configuration (a new one replaces it)."""
        if cls.pending is not None:
            if cls.pending in sys.meta_path:
                sys.meta_path.remove(cls.pending)
            cls.pending = None

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        """The spec of ``structlog`` as the other finders find it, with a loader that
        configures it once it has run; ``None`` for any other module."""
        if name != "structlog":
            return None
        spec = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        # Configured when the module is run, not when it is looked for: a mere look
        # (importlib.util.find_spec) must not use the configuration up.
        spec.loader = _ThenConfigure(spec.loader, self)
        return spec

    def loaded(self, module: ModuleType) -> None:
        """structlog has just been run: configure it, if this is still what is pending."""
        if _ConfigureOnImport.pending is self:
            _ConfigureOnImport.cancel()
            self._configure(module)


class _ThenConfigure:
    """A module's loader, with :meth:`_ConfigureOnImport.loaded` after it runs the module;
    everything else is the wrapped loader's."""

    def __init__(self, loader: Any, finder: _ConfigureOnImport) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._finder.loaded(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _StructlogHandler(logging.Handler):
    """Sends standard-library log records into structlog (or, with JSON lines, into the same
    lines through :class:`~._json_log.JsonLogger`), keeping the logger's name."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed %-format must not lose the line
            message = str(record.msg)
        fields: dict[str, Any] = {"logger": record.name}
        if record.exc_info and record.exc_info[0] is not None:
            fields["exc_info"] = record.exc_info
        logger = configured_logger()
        if logger is None:
            import structlog

            logger = structlog.get_logger(record.name)
        logger.log(record.levelno, message, **fields)


def log_enabled(logger: Any, level: int) -> bool:
    """Whether ``logger`` (structlog's, possibly a lazy proxy) emits at ``level``: checked once
    by hot paths so that lines below the level cost nothing."""
    check = getattr(logger, "is_enabled_for", None)
    if check is None:
        # structlog's lazy proxy: resolve it to see whether the configured wrapper filters.
        bind = getattr(logger, "bind", None)
        check = getattr(bind(), "is_enabled_for", None) if bind else None
    return bool(check(level)) if check is not None else True
