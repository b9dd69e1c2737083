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
