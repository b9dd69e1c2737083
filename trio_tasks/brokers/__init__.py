"""Brokers: where jobs wait and their records live.

:func:`make_broker` picks one by URL; the engine never imports a concrete broker itself, and the
Redis broker (and with it coredis) is imported only when a ``redis://`` URL asks for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import InvalidValue
from ._base import Broker
from ._memory import MemoryBroker

if TYPE_CHECKING:
    from .._config import Config

#: URL schemes served by the Redis broker.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")


def make_broker(url: str, config: Config, *, logger: Any = None) -> Broker:
    """Return the broker for ``url``: ``memory://`` (this process only), ``sqlite:///path``
    (this process, every job journaled in an SQLite file), or ``redis://``, ``rediss://``,
    ``unix://`` (shared by every node pointing at the same Redis), with the
    admission bound and retention of ``config``; ``logger`` is where a broker that logs
    writes (default: the library's logger).

    Raises:
        InvalidValue: an unsupported URL scheme, a malformed Redis or SQLite URL, or an SQLite
            file that cannot be used (in use by another process, corrupt, not writable).
    """
    if url.startswith("memory://"):
        return MemoryBroker(**_limits(config))
    if url.startswith("sqlite://"):
        return _sqlite_broker(url, config, logger)
    if url.startswith(REDIS_SCHEMES):
        from ._redis import RedisBroker  # imports coredis only when Redis is used

        try:
            return RedisBroker(
                url,
                **_limits(config),
                logger=logger,
                min_replicas=config.broker_min_replicas,
            )
        except InvalidValue:
            raise
        except ValueError as exc:
            # Raised by URL parsing below us (a port that is not a number, say).
            raise InvalidValue(f"malformed broker URL: {exc}") from None
    raise InvalidValue(
        f"broker URL {url!r} is not supported; use memory://, sqlite:///path/to/jobs.db or "
        "redis://host:port/db"
    )


def _limits(config: Config) -> dict[str, Any]:
    """The admission bound and retention every broker takes from ``config``."""
    return {
        "max_concurrency": config.max_concurrency,
        "result_ttl": config.result_ttl,
        "result_max_jobs": config.result_max_jobs,
        "result_max_bytes": config.result_max_bytes,
        "failed_ttl": config.failed_ttl,
    }


def _sqlite_broker(url: str, config: Config, logger: Any) -> Broker:
    from ._sqlite import SqliteBroker, parse_sqlite_url
    from ._sqlite_store import StoreError

    path, synchronous = parse_sqlite_url(url)
    try:
        return SqliteBroker(
            path,
            **_limits(config),
            retry_delay=config.retry_delay,
            retry_max_delay=config.retry_max_delay,
            synchronous=synchronous,
            logger=logger,
        )
    except StoreError as exc:
        # At start-up: ``trio-tasks serve`` turns it into one line and exit status 2.
        raise InvalidValue(str(exc)) from None
