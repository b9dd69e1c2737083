"""A real ``redis-server`` for the tests: started on a free port, stopped afterwards.

Used by the Redis fixtures of ``conftest.py``. Tests that stop and restart Redis get a server of
their own (with an append-only file, so a restart keeps the data); the rest share one server
per session and keep apart by using a fresh namespace each.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import trio

#: ``TRIO_TASKS_REQUIRE_REDIS=1`` (set by ``.ci/run``): a missing server fails, not skips.
REQUIRE_REDIS = os.environ.get("TRIO_TASKS_REQUIRE_REDIS", "") not in ("", "0")
#: Use this server instead of starting one (tests that restart Redis still start their own).
#: It must accept the tests without a password (:func:`command` does not authenticate).
EXTERNAL_URL = os.environ.get("TRIO_TASKS_TEST_REDIS_URL", "")


def address(url: str) -> tuple[str, int]:
    """The ``(host, port)`` of a ``redis://`` URL."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def through(url: str, port: int) -> str:
    """``url`` with its host and port replaced by ``127.0.0.1:port`` (a :class:`TcpProxy`)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def redis_binary() -> str | None:
    """The ``redis-server`` executable, or ``None``."""
    return shutil.which("redis-server")


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it under ``TRIO_TASKS_REQUIRE_REDIS=1``."""
    if REQUIRE_REDIS:
        pytest.fail(f"{reason} (TRIO_TASKS_REQUIRE_REDIS=1: Redis tests must run)")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis server answers PING on ``port`` (and has finished loading its data)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port`` with its files in ``directory``.

    ``appendonly=True`` keeps every write in an append-only file fsynced at once, so
    :meth:`restart` (a clean SHUTDOWN, then a new process) loses nothing.
    """

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        binary = redis_binary()
        assert binary is not None, "redis-server is not installed"
        self.binary = binary
        self.directory = directory
        self.appendonly = appendonly
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self.process.poll() is not None:
                stderr = self.process.stderr.read() if self.process.stderr else b""
                raise RuntimeError(f"redis-server exited at start: {stderr!r}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down cleanly (the append-only file is complete) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"SHUTDOWN\r\n")
                sock.recv(64)
        except OSError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
        self._close_pipes()

    def kill(self) -> None:
        """Kill the server (``SIGKILL``)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()


def command(host: str, port: int, *args: str, timeout: float = 5.0) -> Any:
    """Send one command to Redis at ``host:port`` and return the parsed reply (a tiny blocking
    RESP client for assertions from plain, non-Trio code)."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload.encode())
        reader = sock.makefile("rb")
        return _parse_reply(reader)


def _parse_reply(reader: Any) -> Any:
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        if rest == "-1":
            return None
        data = reader.read(int(rest) + 2)
        return data[:-2].decode()
    if kind == b"*":
        if rest == "-1":
            return None
        return [_parse_reply(reader) for _ in range(int(rest))]
    raise RuntimeError(f"unexpected reply {line!r}")


class TcpProxy:
    """A TCP relay on ``127.0.0.1`` to ``target_host:target_port`` that a test can
    :meth:`cut` (every connection is dropped and new ones are refused, as in a network
    partition) and :meth:`heal`.

    Run it with ``port = await nursery.start(proxy.run)``.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.blocked = False
        self._scopes: set[trio.CancelScope] = set()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = int(listeners[0].socket.getsockname()[1])
        task_status.started(self.port)
        await trio.serve_listeners(self._relay, listeners)

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self.blocked = True
        for scope in self._scopes:
            scope.cancel()

    def heal(self) -> None:
        """Accept connections again."""
        self.blocked = False

    async def _relay(self, client: trio.SocketStream) -> None:
        async with client:
            if self.blocked:
                return
            server = await trio.open_tcp_stream(self.target_host, self.target_port)
            async with server:
                with trio.CancelScope() as scope:
                    self._scopes.add(scope)
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._pump, client, server, scope)
                            nursery.start_soon(self._pump, server, client, scope)
                    finally:
                        self._scopes.discard(scope)

    @staticmethod
    async def _pump(
        source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()
