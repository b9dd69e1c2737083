"""The harness's private ``redis-server`` and a tiny blocking RESP client (stdlib only).

Copied in spirit from ``tests/redis_server.py`` (the benchmark does not import the tests).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(port: int, *args: str, timeout: float = 10.0) -> Any:
    """Send one command to the Redis on ``127.0.0.1:port`` and return the parsed reply."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload.encode())
        with sock.makefile("rb") as reader:
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
        return None if rest == "-1" else reader.read(int(rest) + 2)[:-2].decode()
    if kind == b"*":
        return None if rest == "-1" else [_parse_reply(reader) for _ in range(int(rest))]
    raise RuntimeError(f"unexpected reply {line!r}")


def info(port: int, section: str) -> dict[str, str]:
    """``INFO section`` as a dict."""
    text = str(command(port, "INFO", section))
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and line[0] != "#")


def cpu_seconds(port: int) -> float:
    """The server's CPU time so far (user + system, the main thread and its helpers)."""
    figures = info(port, "cpu")
    return float(figures["used_cpu_user"]) + float(figures["used_cpu_sys"])


def version(port: int) -> str:
    """The server's version."""
    return info(port, "server")["redis_version"]


@contextmanager
def redis_server() -> Iterator[int]:
    """A throw-away ``redis-server`` on a free port (no persistence); yields the port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-peers-redis-") as directory:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                directory,
                "--logfile",
                str(Path(directory) / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if command(port, "PING", timeout=0.5) == "PONG":
                        break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}")
                time.sleep(0.02)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
