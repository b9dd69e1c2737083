"""Where trio-tasks logs when it is embedded: the standard library's ``trio_tasks`` logger.

A library prints nothing unless its host asks (the standard advice for libraries): the
``trio_tasks`` logger has a ``NullHandler``, so with no logging configured nothing appears, and a
host's usual ``logging`` set-up (handlers, levels, filters) applies to it like to any other
library. When the host configured structlog instead (``trio-tasks serve`` and ``worker`` do,
through :func:`trio_tasks.configure_logging`), trio-tasks logs through structlog.

Either way the level is read once, when a processor or broker is created: lines below it cost
one method call that does nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

from ._json_log import configured_logger

#: The standard-library logger trio-tasks writes to when embedded.
LOGGER_NAME = "trio_tasks"

logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())


def library_logger(name: str = LOGGER_NAME) -> Any:
    """The logger trio-tasks uses by default: structlog's when the host configured structlog,
    else a structlog wrapper over the standard library's ``name`` logger, filtered at that
    logger's effective level. Event fields travel as the record's ``extra``."""
    if structlog.is_configured():
        # trio-tasks' own JSON lines (``serve``, ``worker``): the same lines without structlog's
        # processor chain, a third of the cost of a line.
        fast = configured_logger()
        if fast is not None and name == LOGGER_NAME:
            return fast
        return structlog.get_logger(name)
    stdlib = logging.getLogger(name)
    return structlog.wrap_logger(
        stdlib,
        processors=[structlog.stdlib.render_to_log_kwargs],
        wrapper_class=structlog.make_filtering_bound_logger(stdlib.getEffectiveLevel()),
        cache_logger_on_first_use=True,
    )
