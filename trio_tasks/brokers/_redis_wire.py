"""A lean RESP3 client on Trio sockets for the broker's hottest commands (``FCALL``).

coredis spends most of a call's CPU in its own machinery (a reader and a writer task per
connection, request objects, anyio timeouts); a submission is one ``FCALL``, so that machinery
is most of what a submission costs. :class:`Wire` is the shortest correct path instead: a call
takes an idle connection from a small pool (or opens one, up to a cap; beyond it the call waits),
writes the whole command in one write, reads exactly its reply and gives the connection back.
There are no background tasks: nothing runs between calls.

It serves one server (``redis://``, ``rediss://``, ``unix://``), with the settings coredis
would parse from the URL (:func:`parse_settings` reads the usual URLs itself and leaves any
other to coredis' parser, through :func:`settings_of`), and answers exactly what coredis
answers in the configuration :mod:`._redis_client` uses (RESP3, ``decode_responses=True``): the
same Python values, the same exception classes for error replies (coredis' own table maps
them), and :class:`coredis.exceptions.ConnectionError` or :class:`TimeoutError` when Redis
cannot be reached or does not answer, which :mod:`._redis_link` takes for "unavailable".
coredis itself is imported only on those error paths (``_redis_errors.py``): a worker on one
server starts without it. :meth:`Wire.subscribe` carries pub/sub too (RESP3 push messages on
a connection of its own).

Resource handling: a connection is only ever used by one call. A call that is cancelled or
fails before its reply is read whole closes its connection (a reply left unread would be
taken for the next call's); the pool serves calls inside ``async with wire:`` only, and
closes its connections as the block ends (one still in a call closes when the call ends).
"""

from __future__ import annotations

import math
import os
import select
import ssl
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import attrs
import trio

from ._redis_errors import connection_error

if TYPE_CHECKING:
    import coredis

#: What a stream raises when its peer is gone.
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
_CRLF = b"\r\n"


_error_parser: Any = None


def error_reply(text: str) -> Exception:
    """The exception coredis makes of the error reply ``text`` (``ERR …``, ``WRONGPASS …``)."""
    global _error_parser
    if _error_parser is None:
        # Maps an error reply's text to coredis' exception (its ``EXCEPTION_CLASSES`` table);
        # imported with the first error reply only.
        from coredis.parser import Parser

        _error_parser = Parser()
    error: Exception = _error_parser.parse_error(text)
    return error


@attrs.frozen
class WireSettings:
    """Where and how to connect: what coredis parsed from the broker URL."""

    #: ``(host, port)`` of a TCP server, or ``None`` with :attr:`path`.
    address: tuple[str, int] | None
    #: The Unix socket of a ``unix://`` URL.
    path: str | None = None
    ssl_context: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    db: int = 0
    client_name: str | None = None
    connect_timeout: float | None = None
    #: The longest a reply may take (a silent server: the connection is taken for dead).
    stream_timeout: float | None = None
    #: An idle connection older than this (seconds) is closed instead of used.
    max_idle: float | None = None
    max_connections: int = 64
    encoding: str = "utf-8"

    @property
    def where(self) -> str:
        """The server, as coredis names it in its errors."""
        if self.address is None:
            return str(self.path)
        return f"{self.address[0]}:{self.address[1]}"


#: The query parameters :func:`parse_settings` reads itself, as coredis' pool parses them.
_PARAMS: dict[str, Any] = {
    "db": int,
    "max_connections": int,
    "client_name": str,
    "stream_timeout": float,
    "connect_timeout": float,
    "max_idle_time": int,
}


def parse_settings(url: str, **options: Any) -> WireSettings | None:
    """The settings coredis would connect with for a ``redis://`` or ``unix://`` URL and its
    keyword ``options`` (``client_name``, ``connect_timeout``, ``stream_timeout``,
    ``max_idle_time``), read the way coredis' ``ConnectionPool.from_url`` reads them (query
    parameters win); ``None`` for any URL it does not read whole (TLS, other query
    parameters), which :func:`settings_of` then takes from coredis' own parser."""
    parts = urlparse(url)
    if parts.scheme not in ("redis", "unix"):
        return None
    query = parse_qs(parts.query)
    if any(name not in _PARAMS for name in query):
        return None
    try:
        merged = dict(options)
        for name, values in query.items():
            if values and values[0]:
                merged[name] = _PARAMS[name](values[0])
        address: tuple[str, int] | None = None
        path: str | None = None
        if parts.scheme == "unix":
            path = parts.path
        else:
            if parts.hostname is None:
                return None
            address = (parts.hostname, int(parts.port or 6379))
            if "db" not in query and parts.path:
                with suppress(ValueError):
                    merged["db"] = int(parts.path.replace("/", ""))
    except ValueError:
        return None  # coredis' parser says what is wrong
    return WireSettings(
        address,
        path,
        None,
        parts.username or None,
        parts.password or None,
        int(merged.get("db") or 0),
        merged.get("client_name"),
        merged.get("connect_timeout"),
        merged.get("stream_timeout"),
        merged.get("max_idle_time"),
        int(merged.get("max_connections") or 64),
        "utf-8",
    )


def settings_of(client: coredis.Redis[Any]) -> WireSettings:
    """The settings the coredis ``client`` of a single-server URL connects with."""
    from coredis.connection import TCPLocation, UnixDomainSocketLocation

    pool = client.connection_pool
    options: dict[str, Any] = dict(pool.connection_kwargs)
    location = pool.location
    address: tuple[str, int] | None = None
    path: str | None = None
    if isinstance(location, UnixDomainSocketLocation):
        path = location.path
    elif isinstance(location, TCPLocation):
        address = (location.host, location.port)
    else:  # pragma: no cover - coredis makes one of the two for these URLs
        raise ValueError(f"no single server to connect to: {location!r}")
    return WireSettings(
        address,
        path,
        options.get("ssl_context"),
        options.get("username"),
        options.get("password"),
        int(options.get("db") or 0),
        options.get("client_name"),
        options.get("connect_timeout"),
        options.get("stream_timeout"),
        options.get("max_idle_time"),
        int(pool.max_connections),
        str(options.get("encoding") or "utf-8"),
    )


def pack(args: Iterable[str | bytes | int]) -> list[bytes]:
    """The RESP bulk strings of ``args`` (without the array header)."""
    parts: list[bytes] = []
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytes):
            data = arg
        else:
            data = b"%d" % arg
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return parts


def pack_text(args: Sequence[str]) -> bytes:
    """:func:`pack` of text arguments, joined: formatted as one string and encoded once when
    it is ASCII (then every character is one byte, so the lengths are right)."""
    text = "".join([f"${len(arg)}\r\n{arg}\r\n" for arg in args])
    if text.isascii():
        return text.encode()
    return b"".join(pack(args))


def command(*args: str | bytes | int) -> bytes:
    """One command in RESP."""
    parts = pack(args)
    return b"*%d\r\n%b" % (len(parts), b"".join(parts))


class Incomplete(Exception):
    """Raised by :meth:`ReplyParser.next`: the buffer ends before the reply does."""


def _hashable(item: Any) -> Any:
    # As coredis makes map keys and set members: lists become tuples, maps tuples of pairs.
    if isinstance(item, list):
        return tuple(_hashable(i) for i in item)
    if isinstance(item, dict):
        return tuple((k, _hashable(v)) for k, v in item.items())
    if isinstance(item, set):
        return frozenset(_hashable(i) for i in item)
    return item


class _Frame:
    """A container being read: ``kind`` is its RESP type byte, ``left`` the items to come."""

    __slots__ = ("items", "key", "kind", "left")

    def __init__(self, kind: int, left: int) -> None:
        self.kind = kind
        self.left = left
        self.items: Any = {} if kind == 37 else set() if kind == 126 else []
        self.key: Any = None

    def add(self, value: Any) -> None:
        self.left -= 1
        if self.kind == 37:  # map: key, value, key, value…
            if self.left % 2:
                self.key = _hashable(value)
            else:
                self.items[self.key] = value
        elif self.kind == 126:
            self.items.add(_hashable(value))
        else:
            self.items.append(value)


class ReplyParser:
    """Reads RESP3 replies from a buffer that grows as data arrives, resuming where the data
    ran out (no byte is parsed twice): :meth:`feed` what arrives, and call :meth:`next` until
    it raises :class:`Incomplete`."""

    __slots__ = ("_buf", "_encoding", "_pos", "_stack", "keep_pushes")

    def __init__(self, encoding: str = "utf-8", *, keep_pushes: bool = False) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._stack: list[_Frame] = []
        self._encoding = encoding
        #: Whether push messages (``>``, pub/sub) are returned as lists; else skipped.
        self.keep_pushes = keep_pushes

    @property
    def pending(self) -> bool:
        """Whether bytes of a reply not yet returned are buffered."""
        return self._pos < len(self._buf) or bool(self._stack)

    def feed(self, data: bytes | bytearray) -> None:
        """Append received bytes."""
        buf = self._buf
        if self._pos and self._pos == len(buf):
            buf.clear()
            self._pos = 0
        elif self._pos > 65536:
            del buf[: self._pos]
            self._pos = 0
        buf += data

    def reset(self) -> None:
        """Forget everything buffered."""
        self._buf.clear()
        self._pos = 0
        self._stack.clear()

    def _text(self, start: int, stop: int) -> str | bytes:
        raw = self._buf[start:stop]
        try:
            return raw.decode(self._encoding)
        except ValueError:
            return bytes(raw)  # as coredis: bytes it cannot decode stay bytes

    def next(self) -> Any:
        """The next whole reply (an error reply as its exception, not raised).

        Raises:
            Incomplete: more data is needed; call again after :meth:`feed`.
            coredis.exceptions.ConnectionError: not RESP (the connection must be closed).
        """
        buf = self._buf
        pos = self._pos
        stack = self._stack
        try:
            while True:
                end = buf.find(_CRLF, pos)
                if end < 0:
                    raise Incomplete
                marker = buf[pos]
                value: Any
                if marker == 36 or marker == 61:  # $ bulk string, = verbatim string
                    length = int(buf[pos + 1 : end])
                    if length < 0:
                        value = None
                        pos = end + 2
                    else:
                        start = end + 2
                        stop = start + length
                        if stop + 2 > len(buf):
                            raise Incomplete
                        if marker == 61:
                            if buf[start : start + 3] != b"txt":
                                raise _protocol_error(buf[start : start + 3])
                            start += 4
                        value = self._text(start, stop)
                        pos = stop + 2
                elif marker == 42 or marker == 37 or marker == 126 or marker == 62:  # * % ~ >
                    length = int(buf[pos + 1 : end])
                    pos = end + 2
                    if length > 0:
                        stack.append(_Frame(marker, 2 * length if marker == 37 else length))
                        self._pos = pos
                        continue
                    if length < 0:
                        value = None
                    else:
                        value = {} if marker == 37 else set() if marker == 126 else []
                elif marker == 58 or marker == 40:  # : integer, ( big number
                    value = int(buf[pos + 1 : end])
                    pos = end + 2
                elif marker == 43:  # + simple string
                    value = self._text(pos + 1, end)
                    pos = end + 2
                elif marker == 45:  # - error
                    value = error_reply(buf[pos + 1 : end].decode(errors="replace"))
                    pos = end + 2
                elif marker == 95:  # _ null
                    value = None
                    pos = end + 2
                elif marker == 44:  # , double
                    value = float(buf[pos + 1 : end])
                    pos = end + 2
                elif marker == 35:  # # boolean
                    value = buf[pos + 1] == 116
                    pos = end + 2
                else:
                    raise _protocol_error(buf[pos : pos + 1])
                self._pos = pos
                while stack:
                    frame = stack[-1]
                    frame.add(value)
                    if frame.left:
                        break
                    stack.pop()
                    value = frame.items
                    if not stack and frame.kind == 62 and not self.keep_pushes:
                        break  # a push message: not a reply (none is expected here)
                else:
                    return value
        except ValueError as exc:
            raise _protocol_error(repr(exc)) from None
        except IndexError:
            raise Incomplete from None


def _protocol_error(what: object) -> Exception:
    return connection_error(f"Protocol error: unexpected data {what!r}")


class _Connection:
    """One connection, used by one call at a time."""

    __slots__ = ("_fd", "_poll", "_socket", "idle_since", "parser", "stream")

    def __init__(self, stream: trio.abc.Stream, encoding: str) -> None:
        self.stream = stream
        self.parser = ReplyParser(encoding)
        self.idle_since = 0.0
        tls = isinstance(stream, trio.SSLStream)
        socket_stream = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        assert isinstance(socket_stream, trio.SocketStream)
        self._socket = socket_stream.socket
        fd = self._socket.fileno()
        #: The socket's descriptor for the direct path of :meth:`request` (``-1`` with TLS).
        self._fd = -1 if tls else fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def alive(self) -> bool:
        """Whether the server has not closed it while it was idle (nothing is readable: an
        idle connection has nothing to read but its end)."""
        return not self._poll.poll(0)

    async def request(self, payload: bytes, replies: int) -> list[Any]:
        """Send ``payload`` (``replies`` commands) and read their replies.

        A plain socket is written and read directly (``os.write``, ``os.read`` on the
        non-blocking descriptor, and Trio's ``wait_readable``): one pass of the scheduler a
        round trip instead of the stream's two or more. A checkpoint either way.
        """
        fd = self._fd
        if fd < 0:
            return await self._request_stream(payload, replies)
        await trio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(payload)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(fd)
        parser = self.parser
        out: list[Any] = []
        # The reply cannot be there yet: wait for it at once (no read that would find nothing).
        # Cancelled here or below, the caller closes the connection.
        await trio.lowlevel.wait_readable(fd)
        while not _take_replies(parser, out, replies):
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                continue
            if not data:
                raise _lost() from None
            parser.feed(data)
        return out

    async def _request_stream(self, payload: bytes, replies: int) -> list[Any]:
        stream = self.stream
        parser = self.parser
        await stream.send_all(payload)
        out: list[Any] = []
        while not _take_replies(parser, out, replies):
            data = await stream.receive_some(65536)
            if not data:
                raise _lost() from None
            parser.feed(data)
        return out

    def close(self) -> None:
        """Close at once (no graceful TLS close: the peer is not waited for)."""
        self._socket.close()


def _take_replies(parser: ReplyParser, out: list[Any], replies: int) -> bool:
    """Move the replies ``parser`` has whole into ``out``; whether all ``replies`` are there.

    Raises:
        ConnectionError: bytes follow the last reply (the connection is out of step).
    """
    while len(out) < replies:
        try:
            out.append(parser.next())
        except Incomplete:
            return False
    if parser.pending:
        raise _protocol_error("after the reply")
    return True


def _lost() -> Exception:
    return connection_error("Connection lost while receiving response")


#: Seconds of silence on a subscribed connection after which it is asked for a ``PING``
#: (as coredis' pub/sub does): a connection gone without a reset is found out.
KEEPALIVE = 15.0


class Subscription:
    """A subscribed connection (see :meth:`Wire.subscribe`): ``async for channel, data in
    subscription`` yields each message published on its channels."""

    def __init__(self, connection: _Connection, settings: WireSettings) -> None:
        self._connection = connection
        self._where = settings.where
        self._timeout = settings.stream_timeout or 10.0
        self._pinged = False

    async def start(self, channels: Sequence[str]) -> None:
        """Subscribe and wait for every confirmation."""
        await self._send(command(b"SUBSCRIBE", *channels))
        confirmed = 0
        while confirmed < len(set(channels)):
            value = await self._next()
            if isinstance(value, list) and value and value[0] == "subscribe":
                confirmed += 1

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        while True:
            value = await self._next()
            if isinstance(value, list) and len(value) == 3 and value[0] == "message":
                return str(value[1]), value[2]

    async def _send(self, payload: bytes) -> None:
        try:
            await self._connection.stream.send_all(payload)
        except _STREAM_ERRORS as exc:
            raise connection_error(f"Connection to {self._where} lost: {exc!r}") from exc

    async def _next(self) -> Any:
        """The next push or reply (an error reply raised)."""
        parser = self._connection.parser
        stream = self._connection.stream
        while True:
            try:
                value = parser.next()
            except Incomplete:
                pass
            else:
                if isinstance(value, Exception):
                    raise value
                return value
            wait = self._timeout if self._pinged else KEEPALIVE
            data: bytes | bytearray = b""
            with trio.move_on_after(wait) as scope:
                try:
                    data = await stream.receive_some(65536)
                except _STREAM_ERRORS as exc:
                    raise connection_error(f"Connection to {self._where} lost: {exc!r}") from exc
            if scope.cancelled_caught:
                if self._pinged:
                    raise TimeoutError(f"no reply from Redis within {self._timeout} seconds")
                self._pinged = True
                await self._send(command(b"PING"))
                continue
            if not data:
                raise _lost()
            self._pinged = False  # anything arriving shows the connection alive
            parser.feed(data)


class Wire:
    """A pool of RESP connections to one server; see the module docstring.

    Error handling: an error reply raises coredis' exception for it; a connection that fails
    raises :class:`coredis.exceptions.ConnectionError`, a reply slower than
    ``stream_timeout`` :class:`TimeoutError` (both close the connection); a handshake refused
    by Redis (a wrong password) raises its error reply's exception, as coredis does.
    """

    def __init__(self, settings: WireSettings) -> None:
        self.settings = settings
        self._idle: list[_Connection] = []
        self._slots = trio.Semaphore(settings.max_connections)
        #: Connections open (idle or in a call).
        self.open_connections = 0
        #: Calls are refused outside ``async with wire:``.
        self.closed = True
        self._heads: dict[str, bytes] = {}
        handshake: list[str | bytes | int] = [b"HELLO", b"3"]
        if settings.username or settings.password:
            handshake += [b"AUTH", settings.username or "default", settings.password or ""]
        if settings.client_name:
            handshake += [b"SETNAME", settings.client_name]
        self._handshake = command(*handshake)
        self._handshake_replies = 1
        if settings.db:
            self._handshake += command(b"SELECT", settings.db)
            self._handshake_replies = 2

    async def execute(self, *args: str | bytes | int) -> Any:
        """Send one command and return its reply."""
        (reply,) = await self._roundtrip(command(*args), 1)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def execute_many(self, commands: Sequence[Sequence[str | bytes | int]]) -> list[Any]:
        """Send ``commands`` in one write and return their replies, in order (error replies as
        their exceptions, not raised), as a non-transactional pipeline does."""
        payload = b"".join(command(*args) for args in commands)
        return await self._roundtrip(payload, len(commands))

    def _fcall_payload(self, function: str, keys: Sequence[str], args: Sequence[str]) -> bytes:
        head = self._heads.get(function)
        if head is None:
            # The name and the keys are the same at every call of a function: packed once.
            head = self._heads[function] = b"".join(pack([b"FCALL", function, len(keys), *keys]))
            if len(self._heads) > 256:
                self._heads.clear()
        return b"*%d\r\n%b%b" % (len(args) + 3 + len(keys), head, pack_text(args))

    async def fcall(self, function: str, keys: Sequence[str], args: Sequence[str]) -> Any:
        """``FCALL function len(keys) *keys *args``: the function's reply."""
        (reply,) = await self._roundtrip(self._fcall_payload(function, keys, args), 1)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def fcall_wait(
        self,
        function: str,
        keys: Sequence[str],
        args: Sequence[str],
        replicas: int,
        timeout_ms: int,
    ) -> tuple[Any, int]:
        """:meth:`fcall`, then ``WAIT replicas timeout_ms`` in the same write (one round
        trip): the function's reply and how many replicas confirmed it."""
        payload = self._fcall_payload(function, keys, args) + command(b"WAIT", replicas, timeout_ms)
        reply, acked = await self._roundtrip(payload, 2)
        for value in (reply, acked):
            if isinstance(value, Exception):
                raise value
        return reply, int(acked)

    async def _roundtrip(self, payload: bytes, replies: int) -> list[Any]:
        if self.closed:
            raise connection_error("the connection pool is closed")
        slots = self._slots
        try:
            slots.acquire_nowait()
        except trio.WouldBlock:
            await slots.acquire()
        done = False
        connection: _Connection | None = None
        try:
            connection = await self._take()
            timeout = self.settings.stream_timeout
            if timeout is None:
                out = await connection.request(payload, replies)
            else:
                with trio.move_on_after(timeout) as scope:
                    out = await connection.request(payload, replies)
                if scope.cancelled_caught:
                    raise TimeoutError(f"no reply from Redis within {timeout} seconds")
            done = True
            return out
        except TimeoutError:
            raise  # an OSError, but not a lost connection
        except _STREAM_ERRORS as exc:
            raise connection_error(f"Connection to {self.settings.where} lost: {exc!r}") from exc
        finally:
            slots.release()
            if connection is not None:
                self._give_back(connection, reusable=done)

    async def _take(self) -> _Connection:
        idle = self._idle
        max_idle = self.settings.max_idle
        while idle:
            connection = idle.pop()
            if connection.alive() and (
                max_idle is None or trio.current_time() - connection.idle_since < max_idle
            ):
                return connection
            self._discard(connection)
        return await self._connect()

    def _give_back(self, connection: _Connection, *, reusable: bool) -> None:
        if reusable and not self.closed:
            if self.settings.max_idle is not None:
                connection.idle_since = trio.current_time()
            self._idle.append(connection)
        else:
            self._discard(connection)

    def _discard(self, connection: _Connection) -> None:
        self.open_connections -= 1
        connection.close()

    async def _connect(self) -> _Connection:
        settings = self.settings
        failed = f"Unable to establish a connection to {settings.where}"
        try:
            with trio.fail_after(settings.connect_timeout or math.inf):
                if settings.address is None:
                    assert settings.path is not None
                    stream: trio.abc.Stream = await trio.open_unix_socket(settings.path)
                else:
                    stream = await trio.open_tcp_stream(*settings.address)
        except (OSError, trio.TooSlowError) as exc:
            raise connection_error(failed) from exc
        if settings.ssl_context is not None:
            assert settings.address is not None
            # As coredis: no TLS close_notify is expected at the end.
            stream = trio.SSLStream(
                stream,
                settings.ssl_context,
                server_hostname=settings.address[0],
                https_compatible=True,
            )
        connection = _Connection(stream, settings.encoding)
        self.open_connections += 1
        done = False
        try:
            if isinstance(stream, trio.SSLStream):
                with trio.fail_after(settings.connect_timeout or math.inf):
                    await stream.do_handshake()
            with trio.fail_after(settings.stream_timeout or math.inf):
                replies = await connection.request(self._handshake, self._handshake_replies)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply  # a refused password: as coredis, the server's own error
            if settings.db and replies[1] != "OK":
                raise connection_error(f"Invalid Database {settings.db}")
            done = True
        except (*_STREAM_ERRORS, trio.TooSlowError) as exc:
            raise connection_error(failed) from exc
        finally:
            if not done:  # failed or cancelled: closed at once
                self._discard(connection)
        return connection

    @asynccontextmanager
    async def subscribe(self, channels: Sequence[str]) -> AsyncIterator[Subscription]:
        """A connection of its own, subscribed to ``channels`` for the block (the
        subscriptions confirmed on entry); iterate the :class:`Subscription` for messages.

        Raises:
            coredis.exceptions.ConnectionError: Redis cannot be reached, or the connection
                was lost (also while iterating).
            TimeoutError: a silent connection did not answer a keep-alive ``PING``.
        """
        if self.closed:
            raise connection_error("the connection pool is closed")
        connection = await self._connect()
        try:
            connection.parser.keep_pushes = True
            subscription = Subscription(connection, self.settings)
            await subscription.start(channels)
            yield subscription
        finally:
            self._discard(connection)

    async def __aenter__(self) -> Wire:
        """Accept calls until the block ends (it may be entered again once it ended)."""
        self.closed = False
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Close the idle connections; those in a call close when it ends. Later calls raise
        :class:`coredis.exceptions.ConnectionError` (until the wire is entered again)."""
        self.closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            self._discard(connection)


def open_wire(client: coredis.Redis[Any]) -> Wire:
    """A :class:`Wire` to the server of ``client`` (a single-server coredis client), with its
    settings."""
    return Wire(settings_of(client))
