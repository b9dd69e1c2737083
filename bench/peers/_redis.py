"""The harness's private ``redis-server`` and a tiny blocking RESP client.

The server itself is :func:`bench._servers.redis_server`, shared with ``python -m bench``; the
client packs and parses with trio-tasks' own RESP code (:mod:`trio_tasks.brokers._redis_wire`).
"""

from __future__ import annotations

import socket
from typing import Any

from trio_tasks.brokers._redis_wire import Incomplete, ReplyParser
from trio_tasks.brokers._redis_wire import command as pack_command

from .._servers import redis_server

__all__ = ["command", "cpu_seconds", "info", "redis_server", "version"]


def command(port: int, *args: str, timeout: float = 10.0) -> Any:
    """Send one command to the Redis on ``127.0.0.1:port`` and return the parsed reply."""
    parser = ReplyParser()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(pack_command(*args))
        while True:
            try:
                reply = parser.next()
            except Incomplete:
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError("redis-server closed the connection") from None
                parser.feed(data)
                continue
            if isinstance(reply, Exception):
                raise RuntimeError(str(reply))
            return reply


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
