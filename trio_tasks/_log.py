"""Where trio-tasks logs when it is embedded: the standard library's ``trio_tasks`` logger.

A library prints nothing unless its host asks (the standard advice for libraries): the
``trio_tasks`` logger has a ``NullHandler``, so with no logging configured nothing appears, and a
host's usual ``logging`` set-up (handlers, levels, filters) applies to it like to any other
library. When the host configured structlog instead (``trio-tasks serve`` and ``worker`` do,
through :func:`trio_tasks.configure_logging`), trio-tasks logs through structlog.

Either way the level is read once, when a processor or broker is created: lines below it cost
one method call that does nothing. With trio-tasks' own JSON lines (``serve``, ``worker``),
structlog is not even imported: the lines are rendered by :class:`~._json_log.JsonLogger`.
"""

from __future__ import annotations

import logging
from typing import Any

from ._json_log import configured_logger

#: The standard-library logger trio-tasks writes to when embedded.
LOGGER_NAME = "trio_tasks"

logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())


def library_logger(name: str = LOGGER_NAME) -> Any:
    """The logger trio-tasks uses by default: structlog's when the host configured structlog,
    else a structlog wrapper over the standard library's ``name`` logger, filtered at that
    logger's effective level. Event fields travel as the record's ``extra``."""
    # trio-tasks' own JSON lines (``serve``, ``worker``): the same lines without structlog's
    # processor chain, a third of the cost of a line (and no import of structlog).
    fast = configured_logger()
    if fast is not None and name == LOGGER_NAME:
        return fast
    import structlog

    if structlog.is_configured():
        return structlog.get_logger(name)
    stdlib = logging.getLogger(name)
    return structlog.wrap_logger(
        stdlib,
        processors=[structlog.stdlib.render_to_log_kwargs],
        wrapper_class=structlog.make_filtering_bound_logger(stdlib.getEffectiveLevel()),
        cache_logger_on_first_use=True,
    )


def node_logger() -> Any:
    """The logger of ``serve`` and ``worker`` themselves: structlog's ``trio_tasks`` logger,
    or the same lines through :class:`~._json_log.JsonLogger` when
    :func:`~trio_tasks.configure_logging` chose JSON lines (without importing structlog)."""
    fast = configured_logger()
    if fast is not None:
        return fast
    import structlog

    return structlog.get_logger(LOGGER_NAME)
