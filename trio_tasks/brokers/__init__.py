"""Brokers: where jobs wait and their records live.

:func:`make_broker` picks one by URL; the engine never imports a concrete broker itself, and the
Redis broker (and with it coredis) is imported only when a ``redis://`` URL asks for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import InvalidValue
from ._base import Broker
from ._memory import MemoryBroker

if TYPE_CHECKING:
    from .._config import Config

#: URL schemes served by the Redis broker.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def make_broker(url: str, config: Config) -> Broker:
    """Return the broker for ``url``: ``memory://`` (this process only), or ``redis://``,
    ``rediss://``, ``unix://`` (shared by every node pointing at the same Redis), with the
    admission bound and retention of ``config``.

    Raises:
        InvalidValue: an unsupported URL scheme or a malformed Redis URL.
    """
    if url.startswith("memory://"):
        return MemoryBroker(
            max_concurrency=config.max_concurrency,
            result_ttl=config.result_ttl,
            result_max_jobs=config.result_max_jobs,
        )
    if url.startswith(REDIS_SCHEMES):
        from ._redis import RedisBroker  # imports coredis only when Redis is used

        try:
            return RedisBroker(
                url,
                max_concurrency=config.max_concurrency,
                result_ttl=config.result_ttl,
                result_max_jobs=config.result_max_jobs,
            )
        except InvalidValue:
            raise
        except ValueError as exc:
            # Raised by URL parsing below us (a port that is not a number, say).
            raise InvalidValue(f"malformed broker URL: {exc}") from None
    raise InvalidValue(
        f"broker URL {url!r} is not supported; use memory:// or redis://host:port/db"
    )
