"""A real ``redis-server`` for the tests: started on a free port, stopped afterwards.

Used by the Redis fixtures of ``conftest.py``. Tests that stop and restart Redis get a server of
their own (with an append-only file, so a restart keeps the data); the rest share one server
per session and keep apart by using a fresh namespace each.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
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

    def __init__(
        self, directory: Path, *, appendonly: bool = False, extra: tuple[str, ...] = ()
    ) -> None:
        binary = redis_binary()
        assert binary is not None, "redis-server is not installed"
        self.binary = binary
        self.directory = directory
        self.appendonly = appendonly
        #: More ``--option value`` arguments (a replica's ``--replicaof``, TLS, cluster mode).
        self.extra = extra
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
            # A replica syncs at once, not after the default 5 s wait for others.
            "--repl-diskless-sync-delay",
            "0",
            "--logfile",
            str(self.directory / "redis.log"),
            *self.extra,
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None:
                stderr = self.process.stderr.read() if self.process.stderr else b""
                raise RuntimeError(f"redis-server exited at start: {stderr!r}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def answers(self) -> bool:
        """Whether the server answers PING (a TLS server overrides this)."""
        return ping(self.port)

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
                    if self.blocked:  # cut while this connection was being relayed
                        scope.cancel()
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


# -- Deployments: a replica, a Sentinel, a cluster, TLS -------------------------------------


def replica_of(master: RedisServer, directory: Path) -> RedisServer:
    """A replica of ``master`` (not started)."""
    return RedisServer(directory, extra=("--replicaof", "127.0.0.1", str(master.port)))


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    """Poll ``predicate`` (a blocking call) until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (OSError, RuntimeError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def info(port: int, section: str) -> dict[str, str]:
    """``INFO section`` of the server on ``port`` as a dict."""
    text = str(command("127.0.0.1", port, "INFO", section))
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and line[0] != "#")


class SentinelServer(RedisServer):
    """``redis-server --sentinel`` monitoring ``master`` as ``name``, with a quick fail-over
    (down after ``down_after_ms``)."""

    def __init__(
        self, directory: Path, master: RedisServer, name: str = "mymaster", down_after_ms: int = 500
    ) -> None:
        super().__init__(directory)
        self.master_port = master.port
        self.name = name
        self.down_after_ms = down_after_ms

    def start(self, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "sentinel.conf"
        config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.directory}\n"
            f"logfile {self.directory / 'sentinel.log'}\n"
            f"sentinel monitor {self.name} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.name} 2000\n"
            f"sentinel parallel-syncs {self.name} 1\n",
            encoding="utf-8",
        )
        self.process = subprocess.Popen(
            [self.binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_for(self.answers, timeout, "the sentinel to answer")

    def master_address(self) -> tuple[str, int] | None:
        """Where the Sentinel says the master is."""
        reply = command("127.0.0.1", self.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return None if reply is None else (str(reply[0]), int(reply[1]))


def cluster_port() -> int:
    """A free port whose cluster bus port (``port + 10000``) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def start_cluster(directory: Path, masters: int = 3, timeout: float = 30.0) -> list[RedisServer]:
    """``masters`` servers in cluster mode joined into one cluster (no replicas), every slot
    covered; the caller kills them."""
    servers = [
        RedisServer(
            directory / f"node{i}",
            extra=(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(directory / f"node{i}" / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
            ),
        )
        for i in range(masters)
    ]
    try:
        for server in servers:
            server.port = cluster_port()
            server.start()
        cli = shutil.which("redis-cli")
        assert cli is not None, "redis-cli is not installed"
        if masters > 1:
            subprocess.run(
                [cli, "--cluster", "create"]
                + [f"127.0.0.1:{s.port}" for s in servers]
                + ["--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
        else:
            command("127.0.0.1", servers[0].port, "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        for server in servers:
            wait_for(
                lambda s=server: info_cluster(s.port).get("cluster_state") == "ok",
                timeout,
                "the cluster to be ok",
            )
    except BaseException:
        for server in servers:
            server.kill()
        raise
    return servers


def info_cluster(port: int) -> dict[str, str]:
    """``CLUSTER INFO`` of the node on ``port``."""
    text = str(command("127.0.0.1", port, "CLUSTER", "INFO"))
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class TlsRedisServer(RedisServer):
    """A server that accepts TLS only, with the certificate files given (no plain port)."""

    def __init__(self, directory: Path, *, cert: Path, key: Path, ca: Path) -> None:
        super().__init__(directory)
        self.ca = ca
        self.extra = (
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(ca),
            "--tls-auth-clients",
            "no",
        )

    @property
    def url(self) -> str:
        """``rediss://127.0.0.1:<port>/0``."""
        return f"rediss://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca))
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
            ):
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class Relay:
    """A blocking TCP relay (threads) on ``127.0.0.1`` to ``target_port`` that a test can
    :meth:`freeze`: it stops passing data on (what is sent meanwhile waits, undelivered), and
    :meth:`close` drops it. Used to make a replica lag behind its master."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._open = threading.Event()
        self._open.set()
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        """Stop passing data on, either way."""
        self._open.clear()

    def close(self) -> None:
        """Drop every connection (what was held back is lost) and stop listening."""
        self._closed = True
        self._open.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                self._open.wait()
                if self._closed:
                    return
                data = source.recv(65536)
                if not data:
                    return
                self._open.wait()
                if self._closed:
                    return
                sink.sendall(data)
        except OSError:
            return
