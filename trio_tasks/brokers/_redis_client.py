"""The coredis client of the Redis broker, for each kind of deployment its URL names.

- ``redis://``, ``rediss://`` (TLS), ``unix://``: one server, over the lean RESP3 client
  (``_redis_wire.py``, commands of ``_redis_commands.py``); coredis is not even imported unless
  the URL needs its parser (TLS, query parameters the wire does not read) or a caller asks for
  :attr:`RedisClient.client`;
- ``redis+sentinel://[user:password@]host:port[,host:port…]/<master>[/<db>]``: the master that
  the Sentinels name, through :class:`coredis.Sentinel`. Every new connection asks the Sentinels
  where the master is and checks its ``ROLE``, so after a fail-over the node finds the new
  master by itself; until there is one, calls fail as if Redis were unreachable;
- ``redis+cluster://host:port[,host:port…]``: a Redis Cluster, :class:`coredis.RedisCluster`
  (every key of a namespace is in one slot: see ``_redis_keys.py``).

:class:`RedisClient` is what the rest of the broker holds (its :attr:`~RedisClient.commands`);
:meth:`RedisClient.open` keeps its connections (and the Sentinels') open for as long as the
broker runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

from .._errors import InvalidValue
from ._redis_commands import Commands, CoredisCommands, WireCommands
from ._redis_wire import Wire, WireSettings, parse_settings, settings_of

if TYPE_CHECKING:
    import coredis

#: A client of one server (or a Sentinel-managed master) or of a cluster.
Client: TypeAlias = "coredis.Redis[str] | coredis.RedisCluster[str]"

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
#: Query parameters of ``redis+sentinel://`` and ``redis+cluster://`` URLs and their types
#: (``redis://`` URLs take whatever :meth:`coredis.Redis.from_url` takes).
_PARAMS: dict[str, Any] = {
    "max_connections": int,
    "sentinel_username": str,
    "sentinel_password": str,
}


@attrs.frozen
class Endpoints:
    """The servers a ``redis+sentinel://`` or ``redis+cluster://`` URL lists."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    master: str | None
    db: int
    username: str | None
    password: str | None = attrs.field(repr=False)
    params: dict[str, Any]


def parse_endpoints(url: str) -> Endpoints:
    """Parse a ``redis+sentinel://`` or ``redis+cluster://`` URL (our own query parameters,
    ``namespace`` and ``lease``, already taken off).

    Raises:
        InvalidValue: no host, a port that is not a number, no master name (Sentinel), a
            database other than 0 (Cluster), an unknown query parameter.
    """
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    hosts: list[tuple[str, int]] = []
    for item in filter(None, hostlist.split(",")):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        if not port.isdigit():
            raise InvalidValue(f"broker URL host {item!r}: expected host:port")
        hosts.append((host.strip("[]") or "127.0.0.1", int(port)))
    if not hosts:
        raise InvalidValue(f"{parts.scheme}:// URL: expected at least one host:port")
    path = [unquote(p) for p in parts.path.split("/") if p]
    master: str | None = None
    if parts.scheme == SENTINEL_SCHEME:
        if not path:
            raise InvalidValue("redis+sentinel:// URL: expected /<master-name>[/<db>] after hosts")
        master, path = path[0], path[1:]
    if len(path) > 1 or (path and not path[0].isdigit()):
        raise InvalidValue(f"broker URL path {parts.path!r}: expected a database number")
    db = int(path[0]) if path else 0
    if parts.scheme == CLUSTER_SCHEME and db != 0:
        raise InvalidValue("redis+cluster:// URL: a cluster has database 0 only")
    params: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        kind = _PARAMS.get(name)
        if kind is None or (name.startswith("sentinel_") and parts.scheme != SENTINEL_SCHEME):
            raise InvalidValue(
                f"broker URL parameter {name!r} is not supported with {parts.scheme}://"
            )
        try:
            params[name] = kind(value)
        except ValueError:
            raise InvalidValue(
                f"broker URL parameter {name}={value!r}: expected {kind.__name__}"
            ) from None
    return Endpoints(parts.scheme, tuple(hosts), master, db, username, password, params)


@attrs.define(eq=False)
class RedisClient:
    """The broker's client and what must stay open with it (the Sentinels')."""

    #: ``single``, ``sentinel`` or ``cluster``.
    kind: str
    connect_timeout: float
    #: The broker's plain commands (``_redis_commands.py``).
    commands: Commands
    sentinel: coredis.Sentinel[str] | None = None
    #: The lean path to a single server (``_redis_wire.py``): every command; ``None`` for
    #: Sentinel and Cluster, which keep coredis.
    wire: Wire | None = None
    #: The coredis client, once made (at once for Sentinel and Cluster).
    made: Client | None = None
    #: How a single server's coredis client is made, when someone asks for it.
    make: Callable[[], Client] | None = None

    @property
    def client(self) -> Client:
        """The coredis client (for one server made, and coredis imported, on first use: the
        broker itself does not use it; tools and tests may, and must then ask before
        :meth:`open`)."""
        if self.made is None:
            assert self.make is not None
            self.made = self.make()
        return self.made

    @asynccontextmanager
    async def open(self) -> AsyncIterator[None]:
        """Keep the connection pools open for the block."""
        async with AsyncExitStack() as stack:
            if self.sentinel is not None:
                await stack.enter_async_context(self.sentinel)
            if self.made is not None:
                await stack.enter_async_context(self.made)
            if self.wire is not None:
                await stack.enter_async_context(self.wire)
            yield


def make_client(
    url: str, *, client_name: str, connect_timeout: float, stream_timeout: float, max_idle: int
) -> RedisClient:
    """The client for ``url`` (see the module docstring). Commands are never retried by
    coredis: the broker retries itself (``_redis_link.py``).

    Raises:
        InvalidValue: a malformed ``redis+sentinel://`` or ``redis+cluster://`` URL.
        ValueError: a malformed ``redis://`` URL (from coredis).
    """
    scheme = urlsplit(url).scheme
    common: dict[str, Any] = {
        "connect_timeout": connect_timeout,
        "stream_timeout": stream_timeout,
    }
    if scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        # A connection silent this long is dead (a partition without a reset): close it so
        # calls fail over to a new one. It must outlast a BLPOP and the pub/sub keep-alive (a
        # PING after 15s of silence); idle ones are cheaply reopened.
        options: dict[str, Any] = {"client_name": client_name, "max_idle_time": max_idle}
        options.update(common)

        def make() -> coredis.Redis[str]:
            import coredis
            from coredis.retry import NoRetryPolicy

            client = coredis.Redis.from_url(
                url, decode_responses=True, retry_policy=NoRetryPolicy(), **options
            )
            assert isinstance(client, coredis.Redis)
            return client

        made: coredis.Redis[str] | None = None
        settings: WireSettings | None = parse_settings(url, **options)
        if settings is None:  # a URL only coredis' parser reads (TLS, other parameters)
            made = made_now = make()
            settings = settings_of(made_now)
        wire = Wire(settings)
        return RedisClient(
            "single", connect_timeout, WireCommands(wire), wire=wire, made=made, make=make
        )
    import coredis
    from coredis.connection import TCPLocation
    from coredis.retry import NoRetryPolicy

    endpoints = parse_endpoints(url)
    params = dict(endpoints.params)
    auth: dict[str, Any] = {"username": endpoints.username, "password": endpoints.password}
    if scheme == CLUSTER_SCHEME:
        cluster: coredis.RedisCluster[str] = coredis.RedisCluster(
            startup_nodes=[TCPLocation(host, port) for host, port in endpoints.hosts],
            decode_responses=True,
            retry_policy=NoRetryPolicy(),
            **auth,
            **common,
            **params,
        )
        return RedisClient("cluster", connect_timeout, CoredisCommands(cluster), made=cluster)
    sentinel_auth: dict[str, Any] = {
        "username": params.pop("sentinel_username", None),
        "password": params.pop("sentinel_password", None),
    }
    sentinel: coredis.Sentinel[str] = coredis.Sentinel(
        [TCPLocation(host, port) for host, port in endpoints.hosts],
        sentinel_kwargs={**common, **sentinel_auth, "client_name": client_name},
        decode_responses=True,
        retry_policy=NoRetryPolicy(),
    )
    assert endpoints.master is not None
    primary: coredis.Redis[str] = sentinel.primary_for(
        endpoints.master,
        db=endpoints.db,
        client_name=client_name,
        max_idle_time=max_idle,
        **auth,
        **common,
        **params,
    )
    return RedisClient(
        "sentinel", connect_timeout, CoredisCommands(primary), sentinel, made=primary
    )
