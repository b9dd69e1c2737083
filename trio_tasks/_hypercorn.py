"""hypercorn as trio-tasks runs it: its configuration, and the four things it does not offer.

- **Reason phrases.** hypercorn sends ``HTTP/1.1 202 `` with an empty reason phrase; clients
  that show the status line (Go's ``resp.Status`` reads ``"202 "``) expect ``202 Accepted``.
- **A connection limit.** hypercorn accepts connections without bound; past the open-file limit
  ``accept`` fails and every client, ``/health`` included, waits. :data:`connection_limit`
  connections are served at once; one more is answered ``503`` (a JSON line, ``Connection:
  close``) and closed at once.

- **A cheap keep-alive timer.** hypercorn closes a connection idle for ``keep_alive_timeout``
  by starting a new timer task (and taking a lock) each time the connection turns idle and
  cancelling it when a request arrives: twice per request, a fifth of a bare app's throughput.
  :class:`_IdleTimer` keeps one task per connection that looks at the connection's idle time
  only when its deadline passes; a request costs two attribute writes. (Started inside a
  request, hypercorn's task was also cancelled at birth by quart-trio's end of the request, so
  idle connections were never closed; this one starts with the connection.)
- **A close that happens.** A response sent before its request's body arrived (a 401, 404 or
  405 answered without reading it) leaves a connection hypercorn cannot reuse, so it closes it,
  from inside the request's task group, which quart-trio cancels at that very moment: the close
  was cut at its first checkpoint and the client waited on a silent connection for ever. The
  close is shielded (and bounded) now.

All four are installed on hypercorn's classes by :func:`install` (idempotent, checked by the
test suite against the hypercorn version in use): the first wraps the h11 protocol's event
sending, the second and fourth the per-connection server the Trio worker starts, the third replaces
the per-connection idle task.
"""

from __future__ import annotations

import http
import logging
import resource
from collections.abc import Generator
from typing import Any

import h11
import hypercorn.protocol.h11 as hypercorn_h11
import hypercorn.trio.run as hypercorn_run
import hypercorn.trio.tcp_server as hypercorn_tcp
import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.logging import Logger as _HypercornBaseLogger

from ._config import Config
from ._logging import log_enabled

#: Seconds in-flight HTTP requests get to finish once the server stops. Every handler answers
#: at once (long-polls are ended first), so this only bounds slow clients.
HTTP_GRACE = 3.0
#: Seconds a client has to send a request's headers (hypercorn's keep-alive timer runs until
#: they are complete) and to finish a TLS handshake.
HEADERS_TIMEOUT = 5.0
#: File descriptors kept for everything but client connections (Redis, logs, threads, files).
RESERVED_FILES = 64
#: Most connections served at once, whatever the open-file limit.
MAX_CONNECTIONS = 4096

_REASONS = {status.value: status.phrase.encode() for status in http.HTTPStatus}
_BUSY_BODY = b'{"error":"too many connections: the server is at its limit; retry"}\n'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nretry-after: 1\r\nconnection: close\r\n\r\n%s"
    % (len(_BUSY_BODY), _BUSY_BODY)
)


def connection_limit(open_files: int | None = None) -> int:
    """Connections served at once: below the open-file limit (``RLIMIT_NOFILE``, soft) by
    :data:`RESERVED_FILES` plus a quarter, at most :data:`MAX_CONNECTIONS`, at least 8."""
    if open_files is None:
        open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if open_files == resource.RLIM_INFINITY:
            open_files = MAX_CONNECTIONS * 2
    return max(8, min(MAX_CONNECTIONS, (open_files - RESERVED_FILES) * 3 // 4))


class TrioTasksHypercornConfig(HypercornConfig):
    """hypercorn's configuration, with the limiter of the connections it serves."""

    connections: trio.CapacityLimiter | None = None


def hypercorn_config(config: Config) -> TrioTasksHypercornConfig:
    """hypercorn's configuration for ``config``: address, TLS, timeouts, logging through
    structlog, and the connection limit."""
    hyper = TrioTasksHypercornConfig()
    host = config.server_host
    hyper.bind = [
        f"[{host}]:{config.server_port}" if ":" in host else f"{host}:{config.server_port}"
    ]
    hyper.certfile = config.certfile
    hyper.keyfile = config.keyfile
    hyper.graceful_timeout = HTTP_GRACE
    hyper.keep_alive_timeout = HEADERS_TIMEOUT
    hyper.ssl_handshake_timeout = HEADERS_TIMEOUT
    hyper.logger_class = HypercornLogger
    hyper.accesslog = None
    hyper.errorlog = None
    hyper.connections = trio.CapacityLimiter(connection_limit())
    return hyper


def install() -> None:
    """Give hypercorn reason phrases and the connection limit (see the module docstring)."""
    protocol: Any = hypercorn_h11.H11Protocol
    run_module: Any = hypercorn_run
    if not getattr(protocol, "_trio_tasks", False):
        send_event = protocol._send_h11_event

        async def send_with_reason(self: Any, event: Any) -> None:
            if type(event) is h11.Response and not event.reason:
                # Built by hypercorn a moment ago and seen by no one else: filled in place.
                object.__setattr__(event, "reason", _REASONS.get(event.status_code, b""))
            await send_event(self, event)

        protocol._send_h11_event = send_with_reason
        protocol._trio_tasks = True
    if run_module.TCPServer is not _LimitedTCPServer:
        _LimitedTCPServer.base = run_module.TCPServer
        run_module.TCPServer = _LimitedTCPServer
    tcp: Any = hypercorn_tcp
    tcp.TrioSingleTask = _IdleTimer


class _IdleTimer:
    """The keep-alive timer of one connection (hypercorn's ``idle_task``): closes it once it
    has been idle for ``keep_alive_timeout``, or at once when the server stops while it is
    idle. hypercorn calls :meth:`restart` when the connection turns idle and :meth:`stop` when
    a request arrives; neither starts or wakes a task once the first has started the timer."""

    def __init__(self) -> None:
        self._idle = False
        self._idle_since = 0.0
        self._started = False
        self._closed = False
        self._parked = trio.lowlevel.ParkingLot()
        self._waiting: trio.CancelScope | None = None

    async def restart(self, task_group: Any, action: Any) -> None:
        """The connection is idle from now on."""
        self._idle = True
        self._idle_since = trio.current_time()
        if not self._started:
            self._started = True
            # ``action`` is the TCP server's own ``_idle_timeout``: its server is what is timed.
            await task_group._nursery.start(self._run, action.__self__)
        elif self._parked:
            self._parked.unpark_all()

    async def stop(self) -> None:
        """The connection is busy (a request arrived)."""
        self._idle = False

    def closed(self) -> None:
        """The connection is closing (either side): the timer ends without acting."""
        self._closed = True
        if self._waiting is not None:
            self._waiting.cancel()
        self._parked.unpark_all()

    async def _run(self, server: Any, task_status: trio.TaskStatus[None]) -> None:
        keep_alive = server.config.keep_alive_timeout
        terminated = server.context.terminated
        task_status.started()
        if self._closed:
            return
        due = self._idle_since + keep_alive
        while True:
            with trio.move_on_at(due) as self._waiting:
                await terminated.wait()
            self._waiting = None
            if self._closed:
                return
            now = trio.current_time()
            if self._idle and (terminated.is_set() or now >= self._idle_since + keep_alive):
                break
            if terminated.is_set():
                # Busy while the server stops: closed when its request is answered.
                await self._parked.park()
                if self._closed:
                    return
                continue
            due = self._idle_since + keep_alive if self._idle else now + keep_alive
        with trio.CancelScope(shield=True):
            await server._initiate_server_close()


#: Seconds a connection's close may take (a TLS close waits for the peer) before it is forced.
_CLOSE_TIMEOUT = 2.0


class _LimitedTCPServer:
    """hypercorn's per-connection server, run only while a connection slot is free."""

    base: Any = None

    def __init__(self, app: Any, config: Any, context: Any, state: Any, stream: Any) -> None:
        self.server = self.base(app, config, context, state, stream)
        timer = self.server.idle_task
        close = self.server._close

        async def close_shielded() -> None:
            # The connection's end ends its timer: without this, a connection closed by its
            # client while busy would keep its timer (and its slot) alive.
            if isinstance(timer, _IdleTimer):
                timer.closed()
            # Shielded: when a response ends before its request's body has arrived (a 401,
            # 404 or 405 answered without reading it), hypercorn closes the connection from
            # inside the request's task group, which quart-trio cancels at that moment: the
            # close was cut at its first checkpoint and the connection stayed open and silent,
            # its client waiting for an answer to its next request forever. Bounded: closing
            # TLS may wait on the peer.
            with trio.CancelScope(shield=True):
                with trio.move_on_after(_CLOSE_TIMEOUT):
                    await close()
                    return
                await trio.aclose_forcefully(stream)

        self.server._close = close_shielded
        self.limiter: trio.CapacityLimiter | None = getattr(config, "connections", None)
        self.stream = stream

    def __await__(self) -> Generator[Any, None, None]:
        return self.run().__await__()

    async def run(self) -> None:
        limiter = self.limiter
        if limiter is None:
            await self.server.run()
            return
        try:
            limiter.acquire_nowait()
        except trio.WouldBlock:
            await self._refuse()
            return
        try:
            await self.server.run()
        finally:
            limiter.release()

    async def _refuse(self) -> None:
        with trio.move_on_after(1):
            try:
                if isinstance(self.stream, trio.SSLStream):
                    await self.stream.do_handshake()
                await self.stream.send_all(_BUSY)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await trio.aclose_forcefully(self.stream)


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
