"""The harness's private ``redis-server`` and a tiny blocking RESP client (stdlib only).

The server itself is :func:`bench._servers.redis_server`, shared with ``python -m bench``.
"""

from __future__ import annotations

import socket
from typing import Any

from .._servers import redis_server

__all__ = ["command", "cpu_seconds", "info", "redis_server", "version"]


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
