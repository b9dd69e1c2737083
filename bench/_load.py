"""A small HTTP/1.1 load generator on Trio: N keep-alive connections, bounded in requests and time.

Written on raw sockets so that the client costs far less CPU per request than the server it
measures (both share the machine's cores).
"""

from __future__ import annotations

import time

import attrs
import trio


@attrs.frozen
class LoadResult:
    """What one load run measured."""

    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        """Answered requests per second."""
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` (0-1) in seconds."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build_request(method: str, target: str, body: bytes = b"") -> bytes:
    """Serialise one keep-alive request."""
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        "Content-Type: application/json\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(stream: trio.SocketStream, buffer: bytearray) -> int:
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    head = bytes(buffer[:end]).decode("latin-1")
    status = int(head.split(" ", 2)[1])
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    total = end + 4 + length
    while len(buffer) < total:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    del buffer[:total]
    return status


async def run_load(
    port: int, request: bytes, *, connections: int, total: int, max_seconds: float
) -> LoadResult:
    """Send ``total`` copies of ``request`` over ``connections`` keep-alive connections."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    remaining = total
    errors = 0

    async def client() -> None:
        nonlocal remaining, errors
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        buffer = bytearray()
        async with stream:
            while remaining > 0:
                remaining -= 1
                sent = time.perf_counter()
                await stream.send_all(request)
                status = await _read_response(stream, buffer)
                latencies.append(time.perf_counter() - sent)
                statuses[status] = statuses.get(status, 0) + 1
                if status >= 400:
                    errors += 1

    start = time.perf_counter()
    with trio.move_on_after(max_seconds):
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(client)
    seconds = time.perf_counter() - start
    return LoadResult(len(latencies), errors, seconds, latencies, statuses)
