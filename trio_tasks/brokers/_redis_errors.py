"""coredis' exception classes, without importing coredis before an error needs one.

Importing coredis costs a worker about 165 ms at start (most of its start-up), and a node on one
server needs none of it on its way: the wire (``_redis_wire.py``) carries every command. Errors
keep coredis' classes all the same (the wire answers exactly what coredis answers), so:

- :func:`exceptions` imports ``coredis.exceptions`` when an error is to be raised (a rare path:
  an error reply, a lost connection);
- :func:`is_error` tells whether an exception is one of coredis' classes without importing
  coredis: if it was never imported, no exception can be an instance of its classes.
"""

from __future__ import annotations

import sys
from types import ModuleType


def exceptions() -> ModuleType:
    """``coredis.exceptions``, imported on first use."""
    import coredis.exceptions  # an error path (once imported, a look-up in sys.modules)

    return coredis.exceptions


def is_error(exc: BaseException, *names: str) -> bool:
    """Whether ``exc`` is an instance of one of coredis' exception classes ``names``
    (``"ResponseError"``, ``"ConnectionError"``…); never imports coredis."""
    module = sys.modules.get("coredis.exceptions")
    if module is None:
        return False
    return isinstance(exc, tuple(getattr(module, name) for name in names))


def connection_error(message: str) -> Exception:
    """coredis' ``ConnectionError`` with ``message`` (what the broker takes for "unavailable")."""
    error: Exception = exceptions().ConnectionError(message)
    return error
