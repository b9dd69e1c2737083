"""``trio_tasks.serve``: the real hypercorn server in the caller's nursery, over real sockets."""

from __future__ import annotations

import gc
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

import trio_tasks
from trio_tasks import Config, Processor
from trio_tasks._serve import HTTP_GRACE

CONFIG = Config(server_host="127.0.0.1", server_port=0, workers=2, shutdown_timeout=5.0)


async def serve_then_set(
    processor: Processor,
    stopped: trio.Event,
    shutdown_trigger: Any = None,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``trio_tasks.serve``, setting ``stopped`` once it has returned."""
    await trio_tasks.serve(
        processor, CONFIG, shutdown_trigger=shutdown_trigger, task_status=task_status
    )
    stopped.set()


@asynccontextmanager
async def served() -> AsyncIterator[tuple[Processor, httpx.AsyncClient, trio.Event]]:
    """A processor and its API on a free port, an httpx client (keep-alive on), and an event
    set when the server has stopped."""
    processor = Processor(trio_tasks.demo_registry(min_duration=0, max_duration=0), CONFIG)
    http_stopped = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(processor.run)
        urls = await nursery.start(serve_then_set, processor, http_stopped)
        async with httpx.AsyncClient(base_url=urls[0]) as client:
            yield processor, client, http_stopped


async def test_serve_answers_over_http_and_stops_with_the_processor() -> None:
    async with served() as (processor, client, http_stopped):
        health = await client.get("/health")
        submitted = await client.post("/jobs", params={"type": "email", "priority": "high"})
        job_id = submitted.json()["job_id"]
        done = await client.get(f"/jobs/{job_id}", params={"wait": "10s"})
        # The client's connection stays open (keep-alive) while the server stops: the server
        # must close it instead of waiting out its grace period for it.
        processor.shutdown()
        with trio.fail_after(HTTP_GRACE - 1):
            await processor.wait_stopped()
            await http_stopped.wait()
    assert health.json()["status"] == "healthy"
    assert submitted.status_code == 202
    assert done.json()["status"] == "completed"


async def test_a_long_poll_is_answered_when_the_server_stops() -> None:
    async with served() as (processor, client, _):
        body = {"type": "backup", "payload": {"duration": "1h"}}
        job_id = (await client.post("/jobs", json=body)).json()["job_id"]
        answers: list[httpx.Response] = []

        async def long_poll() -> None:
            answers.append(await client.get(f"/jobs/{job_id}", params={"wait": "60s"}))

        with trio.fail_after(HTTP_GRACE - 1):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(long_poll)
                await trio.sleep(0.2)
                processor.shutdown(grace=0)
    assert answers[0].status_code == 200
    # The job was interrupted by the shutdown and handed back: it is not final.
    assert answers[0].json()["status"] in {"pending", "running"}


async def test_serve_stops_on_its_shutdown_trigger_while_the_processor_runs() -> None:
    processor = Processor(trio_tasks.demo_registry(), CONFIG)
    stop_http, http_stopped = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(processor.run)
        urls = await nursery.start(serve_then_set, processor, http_stopped, stop_http.wait)
        async with httpx.AsyncClient(base_url=urls[0]) as client:
            assert (await client.get("/health")).status_code == 200
        stop_http.set()
        with trio.fail_after(HTTP_GRACE - 1):
            await http_stopped.wait()
        assert not processor.closing
        processor.shutdown()


async def test_serve_refuses_an_address_in_use() -> None:
    with trio.socket.socket() as taken:
        await taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = Config(server_host="127.0.0.1", server_port=port)
        processor = Processor(trio_tasks.demo_registry(), config)
        errors: list[BaseException] = []
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(processor.run)
                try:
                    await nursery.start(trio_tasks.serve, processor, config)
                finally:
                    processor.shutdown(grace=0)
        except BaseException as exc:
            errors.append(exc)
    assert errors
    group = errors[0]
    assert isinstance(group, BaseExceptionGroup)
    assert group.subgroup(OSError) is not None
    # hypercorn does not close the socket whose bind failed; collect it here, where its
    # ResourceWarning is expected, rather than in whichever test the collector next runs in.
    del errors, group
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


# -- the keep-alive timer (trio_tasks._hypercorn._IdleTimer) ---------------------------------


async def _raw_request(stream: trio.SocketStream, request: bytes) -> bytes:
    """Send one HTTP/1.1 request and read until its (small, Content-Length) answer is whole."""
    await stream.send_all(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += await stream.receive_some(65536)
    return head


async def _closed_by_server(stream: trio.SocketStream) -> bool:
    return await stream.receive_some(65536) == b""


async def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(monkeypatch: Any) -> None:
    monkeypatch.setattr("trio_tasks._hypercorn.HEADERS_TIMEOUT", 0.5)
    async with served() as (processor, client, _):
        port = int(str(client.base_url).rsplit(":", 1)[1].strip("/"))
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        get = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
        for _ in range(3):  # the connection is kept alive between requests
            assert (await _raw_request(stream, get)).startswith(b"HTTP/1.1 200 OK")
        started = trio.current_time()
        with trio.fail_after(5):
            assert await _closed_by_server(stream)
        # Closed by the timer (0.5 s idle), not by anything slower.
        assert trio.current_time() - started < 2.5
        await stream.aclose()
        processor.shutdown()


async def test_a_busy_connection_outlives_the_keep_alive_timeout(monkeypatch: Any) -> None:
    monkeypatch.setattr("trio_tasks._hypercorn.HEADERS_TIMEOUT", 0.3)
    async with served() as (processor, client, _):
        body = b'{"type":"backup","payload":{"duration":"1h"}}'
        job_id = (await client.post("/jobs", content=body)).json()["job_id"]
        port = int(str(client.base_url).rsplit(":", 1)[1].strip("/"))
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        # A long poll of 1.5 s: five keep-alive periods, busy all along.
        poll = f"GET /jobs/{job_id}?wait=1.5s HTTP/1.1\r\nhost: x\r\n\r\n".encode()
        with trio.fail_after(5):
            head = await _raw_request(stream, poll)
        assert head.startswith(b"HTTP/1.1 200 OK")
        # Idle again: now the timer closes it.
        with trio.fail_after(5):
            assert await _closed_by_server(stream)
        await stream.aclose()
        processor.shutdown(grace=0)


async def test_a_connection_closed_by_its_client_frees_its_slot_at_once() -> None:
    async with served() as (processor, client, _):
        port = int(str(client.base_url).rsplit(":", 1)[1].strip("/"))
        streams = []
        for _ in range(20):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await _raw_request(stream, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            streams.append(stream)
        for stream in streams:
            await stream.aclose()
        # Each connection's task (and its timer) ends with the connection, well before the
        # 5 s keep-alive timeout: the server stops at once.
        processor.shutdown()
        with trio.fail_after(HTTP_GRACE - 1):
            await processor.wait_stopped()


async def test_an_answer_before_the_request_body_closes_the_connection() -> None:
    # A 405 (or a 401, a 404) answered before its request's body arrived: hypercorn cannot
    # reuse the connection and closes it, from a task group that quart-trio cancels at that
    # moment; the close must still happen, or the client waits on a silent connection forever.
    async with served() as (processor, client, _):
        port = int(str(client.base_url).rsplit(":", 1)[1].strip("/"))
        for method, path in (("PUT", "/jobs/batch"), ("QUERY", "/jobs"), ("POST", "/nowhere")):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            head = f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\n"
            await stream.send_all(head.encode())
            received = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(65536):
                    received += chunk
            assert received.split(b"\r\n", 1)[0] in (
                b"HTTP/1.1 405 Method Not Allowed",
                b"HTTP/1.1 404 Not Found",
            ), received
            await stream.aclose()
        # A request whose body comes late, after headers the server waited on, is answered and
        # the connection kept.
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        body = b'{"type":"backup"}'
        for _ in range(2):
            await stream.send_all(
                b"POST /jobs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n" % len(body)
            )
            await trio.sleep(0.05)
            await stream.send_all(body)
            with trio.fail_after(5):
                assert (await _raw_request(stream, b"")).startswith(b"HTTP/1.1 202")
        await stream.aclose()
        processor.shutdown(grace=0)
