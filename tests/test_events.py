"""The event streams (``GET /jobs/{id}/events``, ``GET /events``) through the app's test client,
on each broker: states, progress and the end of one job; filters; the keep-alive comment on a
MockClock; a client too slow to read is dropped while the jobs go on; streams end when the node
stops; the token guard applies. The hub itself: nothing is listening while nobody follows."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import trio_tasks
from trio_tasks._cli_client import Progress, render
from trio_tasks._event_json import SUMMARY_FIELDS
from trio_tasks._events import progress_event, state_event
from trio_tasks._job import job_to_json
from trio_tasks.brokers._redis_events import decode
from trio_tasks.http import create_app
from trio_tasks.http._events import DROP_GRACE, KEEP_ALIVE

Event = tuple[str, Any]


class Stream:
    """One streaming request of the test client, read event by event."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.buffer = ""
        self.ended = False

    async def next(self) -> Event:
        """The next ``(name, data)``; ``("comment", text)`` for a comment; ``("eof", None)``."""
        while "\n\n" not in self.buffer:
            try:
                chunk = await self.connection.receive()
            except trio.EndOfChannel:
                self.ended = True
                return ("eof", None)
            self.buffer += chunk.decode()
        block, self.buffer = self.buffer.split("\n\n", 1)
        if block.startswith(":"):
            return ("comment", block[1:].strip())
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        return (fields["event"], json.loads(fields["data"]))

    async def until(self, name: str) -> list[Event]:
        """Every event up to and including the first named ``name``."""
        seen: list[Event] = []
        while True:
            event = await self.next()
            seen.append(event)
            if event[0] in (name, "eof"):
                return seen


@asynccontextmanager
async def stream(client: Any, path: str, **headers: str) -> AsyncIterator[Stream]:
    """A streaming request; on the way out the client goes away (its request is cancelled:
    the test client would wait for the end of a stream that never ends)."""
    with trio.CancelScope() as scope:
        async with client.request(path, headers=headers) as connection:
            await connection.send_complete()
            try:
                yield Stream(connection)
            finally:
                scope.cancel()


def progress_registry() -> tuple[trio_tasks.TaskRegistry, trio.Event]:
    registry = trio_tasks.TaskRegistry()
    gate = trio.Event()

    @registry.task("work", retries=0)
    async def work(ctx: trio_tasks.JobContext) -> dict[str, bool]:
        await ctx.set_progress(0.5)
        await gate.wait()
        await ctx.set_progress({"done": 2, "of": 2})
        if ctx.payload.get("fail"):
            raise RuntimeError("asked to")
        return {"ok": True}

    @registry.task("quick")
    async def quick(ctx: trio_tasks.JobContext) -> None:
        await trio.lowlevel.checkpoint()

    return registry, gate


async def test_a_job_stream_sends_its_state_progress_and_end(
    make_processor: Any, behaviour_clock: trio.testing.MockClock | None
) -> None:
    registry, gate = progress_registry()
    async with make_processor(registry, workers=1) as processor:
        client = create_app(processor).test_client()
        job = await processor.submit("work", delay=5)
        async with stream(client, f"/jobs/{job.id}/events") as events:
            name, first = await events.next()
            assert events.connection.status_code == 200
            assert events.connection.headers["Content-Type"] == "text/event-stream; charset=utf-8"
            assert events.connection.headers["Cache-Control"] == "no-cache"
            assert events.connection.headers["X-Accel-Buffering"] == "no"
            assert (name, first["status"]) == ("state", "scheduled")
            # At once: exactly what GET /jobs/{id} answers.
            answer = await (await client.get(f"/jobs/{job.id}")).get_json()
            assert first == answer
            seen = await events.until("progress")
            assert seen[-1] == (
                "progress",
                {"job_id": job.id, "type": "work", "priority": "normal", "progress": 0.5},
            )
            states = [data["status"] for name, data in seen if name == "state"]
            assert states[-1] == "running"
            gate.set()
            rest = await events.until("end")
            assert rest[-1] == ("end", {"job_id": job.id, "status": "completed"})
            assert ("progress", {"job_id": job.id, "type": "work", "priority": "normal",
                                 "progress": {"done": 2, "of": 2}}) in rest  # fmt: skip
            final = rest[-2]
            assert final[0] == "state"
            assert final[1]["status"] == "completed"
            assert final[1]["result"] == {"ok": True}
            assert await events.next() == ("eof", None)
        processor.shutdown(grace=0)


async def test_a_finished_job_gets_one_state_then_end(
    make_processor: Any, behaviour_clock: trio.testing.MockClock | None
) -> None:
    registry, _ = progress_registry()
    async with make_processor(registry, workers=1) as processor:
        client = create_app(processor).test_client()
        job = await processor.submit("quick")
        await processor.wait(job.id)
        async with stream(client, f"/jobs/{job.id}/events") as events:
            name, data = await events.next()
            assert (name, data["status"]) == ("state", "completed")
            assert await events.next() == ("end", {"job_id": job.id, "status": "completed"})
            assert await events.next() == ("eof", None)
        missing = await client.get("/jobs/no-such-job/events")
        assert missing.status_code == 404
        assert "error" in await missing.get_json()
        processor.shutdown(grace=0)


async def test_a_failed_and_a_cancelled_job_end_their_streams(
    make_processor: Any, behaviour_clock: trio.testing.MockClock | None
) -> None:
    registry, gate = progress_registry()
    async with make_processor(registry, workers=1) as processor:
        client = create_app(processor).test_client()
        failing = await processor.submit("work", {"fail": True})
        waiting = await processor.submit("quick", delay=60)
        async with (
            stream(client, f"/jobs/{failing.id}/events") as first,
            stream(client, f"/jobs/{waiting.id}/events") as second,
        ):
            assert (await first.next())[0] == "state"
            gate.set()
            seen = await first.until("end")
            assert seen[-1] == ("end", {"job_id": failing.id, "status": "failed"})
            assert seen[-2][1]["error"]["message"] == "asked to"
            assert (await second.next())[1]["status"] == "scheduled"
            await processor.cancel(waiting.id)
            seen = await second.until("end")
            assert [name for name, _ in seen] == ["state", "end"]
            assert seen[0][1]["status"] == "cancelled"
        processor.shutdown(grace=0)


async def test_a_retry_is_streamed_as_scheduled_then_running_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = trio_tasks.TaskRegistry()

    @registry.task("flaky", retries=1)
    async def flaky(ctx: trio_tasks.JobContext) -> int:
        await trio.sleep(1)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return ctx.attempt

    async with trio_tasks.open_processor(registry, workers=1, retry_delay="2s") as processor:
        client = create_app(processor).test_client()
        job = await processor.submit("flaky", delay=1)
        async with stream(client, f"/jobs/{job.id}/events") as events:
            seen = await events.until("end")
        states = [(data["status"], data["attempts"]) for name, data in seen if name == "state"]
        assert states == [
            ("scheduled", 0),
            ("running", 1),
            ("scheduled", 1),
            ("running", 2),
            ("completed", 2),
        ]
        processor.shutdown(grace=0)


async def test_events_of_every_job_filtered(
    make_processor: Any, behaviour_clock: trio.testing.MockClock | None
) -> None:
    registry, gate = progress_registry()
    async with make_processor(registry, workers=2) as processor:
        client = create_app(processor).test_client()
        for query in ("status=bogus", "priority=9", "priority=bogus", "detail=most"):
            bad = await client.get(f"/events?{query}")
            assert bad.status_code == 400, query
            assert "error" in await bad.get_json()
        # detail=full: every event, each state the job's whole record.
        async with (
            stream(client, "/events?detail=full") as every,
            stream(client, "/events?type=work&priority=high&detail=full") as high_work,
            stream(client, "/events?status=completed&detail=FULL") as completed,
        ):
            for events in (every, high_work, completed):
                assert await events.next() == ("hello", {"node": processor.broker.node_id})
            low = await processor.submit("work", priority="low")
            high = await processor.submit("work", priority="high")
            quick = await processor.submit("quick", priority="high")
            gate.set()
            for job in (low, high, quick):
                await processor.wait(job.id)
            every_seen = [await every.next() for _ in range(3 * 3 + 2 * 2)]
            assert sorted({data.get("id", data.get("job_id")) for _, data in every_seen}) == (
                sorted([low.id, high.id, quick.id])
            )
            high_seen = [await high_work.next() for _ in range(3 + 2)]
            assert {data.get("id", data.get("job_id")) for _, data in high_seen} == {high.id}
            assert [name for name, _ in high_seen].count("progress") == 2
            # The status filter keeps state events of that status, and progress of any.
            completed_seen = [await completed.next() for _ in range(3 + 2 * 2)]
            states = [data for name, data in completed_seen if name == "state"]
            assert {data["status"] for data in states} == {"completed"}
            assert {data["id"] for data in states} == {low.id, high.id, quick.id}
            assert all(list(data) == list(job_to_json(low)) for data in states)
        processor.shutdown(grace=0)


async def until_final(events: Stream, job_ids: set[str]) -> list[tuple[str, Any]]:
    """The events of ``events`` up to the final states of ``job_ids``."""
    seen: list[tuple[str, Any]] = []
    ended: set[str] = set()
    while not job_ids <= ended:
        name, data = await events.next()
        seen.append((name, data))
        if name == "state" and data["status"] in ("completed", "failed", "cancelled"):
            ended.add(data["id"])
    return seen


async def test_events_of_every_job_are_summaries_of_each_jobs_newest_state(
    make_processor: Any, behaviour_clock: trio.testing.MockClock | None
) -> None:
    registry, gate = progress_registry()
    async with make_processor(registry, workers=3) as processor:
        client = create_app(processor).test_client()
        async with (
            stream(client, "/events") as every,
            stream(client, "/events?type=work&priority=high&detail=summary") as high_work,
            stream(client, "/events?status=running") as running,
        ):
            for events in (every, high_work, running):
                assert await events.next() == ("hello", {"node": processor.broker.node_id})
            low = await processor.submit("work", priority="low", payload={"fail": True})
            high = await processor.submit("work", priority="high")
            quick = await processor.submit("quick", priority="high")
            await processor.wait(quick.id)
            gate.set()
            for job in (low, high):
                await processor.wait(job.id)
            every_seen = await until_final(every, {low.id, high.id, quick.id})
            states = [data for name, data in every_seen if name == "state"]
            # A summary: the fields a table shows, not the payload, result nor earlier errors.
            assert all(tuple(data) == SUMMARY_FIELDS for data in states)
            final = {data["id"]: data for data in states}
            done = await processor.get(high.id)
            assert final[high.id] == {
                name: value for name, value in job_to_json(done).items() if name in SUMMARY_FIELDS
            }
            assert final[low.id]["status"] == "failed"
            assert final[low.id]["error"] == {"message": "asked to", "type": "RuntimeError"}
            # The newest progress of each job comes before its final state.
            progress = [data for name, data in every_seen if name == "progress"]
            last = {data["job_id"]: data["progress"] for data in progress}
            assert last[high.id] == {"done": 2, "of": 2}
            at = {
                (name, data.get("id", data.get("job_id")), str(data.get("status"))): i
                for i, (name, data) in enumerate(every_seen)
            }
            assert at[("progress", high.id, "None")] < at[("state", high.id, "completed")]
            assert final[high.id]["progress"] == {"done": 2, "of": 2}
            # A status never goes back: each job's states in the order of its life.
            order = ["pending", "running", "failed", "completed"]
            for job in (low, high, quick):
                mine = [order.index(d["status"]) for d in states if d["id"] == job.id]
                assert mine == sorted(mine), (job.id, mine)
            high_seen = await until_final(high_work, {high.id})
            assert {data.get("id", data.get("job_id")) for _, data in high_seen} == {high.id}
            # The status filter: the newest *running* state of each job that ran (never their
            # later states), and progress of any.
            seen_running: dict[str, Any] = {}
            while set(seen_running) != {low.id, high.id, quick.id}:
                name, data = await running.next()
                if name == "state":
                    assert data["status"] == "running"
                    seen_running[data["id"]] = data
        processor.shutdown(grace=0)


async def test_an_idle_stream_sends_a_keep_alive_comment_every_15s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry, _ = progress_registry()
    async with trio_tasks.open_processor(registry, workers=1) as processor:
        client = create_app(processor).test_client()
        job = await processor.submit("quick", delay=3600)
        async with (
            stream(client, "/events") as every,
            stream(client, f"/jobs/{job.id}/events") as one,
        ):
            assert (await every.next())[0] == "hello"
            assert (await one.next())[0] == "state"
            started = trio.current_time()
            assert await every.next() == ("comment", "keep-alive")
            assert trio.current_time() - started == pytest.approx(KEEP_ALIVE)
            # The job's stream looks the job up meanwhile (nothing changed: nothing sent).
            assert await one.next() == ("comment", "keep-alive")
            assert trio.current_time() - started == pytest.approx(KEEP_ALIVE)
            assert await every.next() == ("comment", "keep-alive")
            assert trio.current_time() - started == pytest.approx(2 * KEEP_ALIVE)
        processor.shutdown(grace=0)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_a_client_that_stops_reading_is_dropped_while_the_jobs_go_on() -> None:
    # A real server: the client's socket fills up and the server's send blocks.
    registry = trio_tasks.TaskRegistry()

    @registry.task("big")
    async def big(ctx: trio_tasks.JobContext) -> str:
        await trio.lowlevel.checkpoint()
        return "x" * 100_000

    config = trio_tasks.Config(
        server_host="127.0.0.1", server_port=0, workers=4, max_concurrency=100_000
    )
    async with trio_tasks.open_processor(registry, config=config) as processor:
        processor.events.max_events = 50
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(trio_tasks.serve, processor, config)
            port = int(urls[0].rsplit(":", 1)[1])
            stuck = await trio.open_tcp_stream("127.0.0.1", port)
            await stuck.send_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
            # The server's request task subscribes: nothing to wait on but the count.
            while processor.events.subscribers == 0:  # noqa: ASYNC110
                await trio.sleep(0.01)
            jobs = []
            with trio.fail_after(60):
                for _ in range(20):
                    batch = [trio_tasks.JobRequest.build("big") for _ in range(50)]
                    jobs += [a.job for a in await processor.submit_many(batch)]
                    await trio.sleep(0.02)
                for job in jobs:
                    assert (await processor.wait(job.id)).status.value == "completed"
            assert processor.events.dropped_count == 1
            assert processor.events.subscribers == 0
            # Its response was cut after the grace: what the socket holds, then the end.
            received = 0
            with trio.fail_after(DROP_GRACE + 10):
                while chunk := await stuck.receive_some(1 << 20):
                    received += len(chunk)
            assert 0 < received < len(jobs) * 100_000
            await stuck.aclose()
            processor.shutdown(grace=0)


async def test_a_slow_reader_is_told_it_was_dropped() -> None:
    registry, _ = progress_registry()
    async with trio_tasks.open_processor(registry, workers=2, max_concurrency=10_000) as processor:
        processor.events.max_events = 20
        client = create_app(processor).test_client()
        async with stream(client, "/events") as slow:
            assert (await slow.next())[0] == "hello"
            # Submitted in one go, before the reader runs again: more than it may fall behind.
            await processor.submit_many([trio_tasks.JobRequest.build("quick") for _ in range(50)])
            assert await slow.next() == ("dropped", {"reason": "client too slow"})
            assert await slow.next() == ("eof", None)
        assert processor.events.dropped_count == 1
        processor.shutdown(grace=0)


async def test_streams_end_cleanly_when_the_node_stops() -> None:
    registry, _ = progress_registry()
    async with trio_tasks.open_processor(registry, workers=1) as processor:
        client = create_app(processor).test_client()
        job = await processor.submit("work")
        async with (
            stream(client, "/events") as every,
            stream(client, f"/jobs/{job.id}/events") as one,
        ):
            assert (await every.next())[0] == "hello"
            assert (await one.next())[0] == "state"
            processor.shutdown(grace=0)
            assert (await one.until("eof"))[-1] == ("eof", None)
            assert (await every.until("eof"))[-1] == ("eof", None)
    assert processor.events.subscribers == 0


async def test_the_streams_ask_for_the_token() -> None:
    registry, _ = progress_registry()
    config = trio_tasks.Config(api_token="events-token-0123456789", workers=1)
    async with trio_tasks.open_processor(registry, config=config) as processor:
        client = create_app(processor).test_client()
        job = await processor.submit("quick")
        for path in ("/events", f"/jobs/{job.id}/events"):
            refused = await client.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        await processor.wait(job.id)
        headers = {"Authorization": "Bearer events-token-0123456789"}
        async with stream(client, f"/jobs/{job.id}/events", **headers) as events:
            assert (await events.until("end"))[-1][0] == "end"
        processor.shutdown(grace=0)


async def test_the_hub_listens_only_while_someone_follows() -> None:
    registry, _ = progress_registry()
    async with trio_tasks.open_processor(registry, workers=1) as processor:
        hub = processor.events
        listeners = processor._listeners
        assert hub.on_job_event not in listeners
        first = hub.subscribe()
        second = hub.subscribe(job_id="x")
        assert listeners.count(hub.on_job_event) == 1
        first.close()
        assert hub.on_job_event in listeners
        second.close()
        second.close()
        assert hub.on_job_event not in listeners
        assert hub.subscribers == 0
        processor.shutdown(grace=0)


def test_a_message_between_nodes_decodes_to_the_same_event() -> None:
    job = trio_tasks.Job(
        id="j-1",
        type="t",
        priority=trio_tasks.Priority.HIGH,
        payload={"x": "é\n"},
        max_attempts=3,
        timeout=1.0,
        created_at=1.0,
        attempts=2,
        errors=[{"attempt": 1, "time": None, "type": "E", "message": "m"}],
    )
    for event in (state_event(job), progress_event(job)):
        message = b"node-a\n%s\n%s" % (event.kind.encode(), event.data)
        assert decode(message, own="node-a") is None  # this node's own: not delivered twice
        # As the Redis client hands it over (decoded) too.
        for form in (message, message.decode()):
            received = decode(form, own="node-b")
            assert received is not None
            assert received[:4] == event[:4]
            assert (received.data, received.text) == (event.data, event.text)
        if event.kind == "state":
            assert received.order == event.order == (1, 2, 2)
    assert decode("node-a\nstate\n{not json", own="node-b") is None
    assert decode("garbage", own="node-b") is None


def test_the_progress_line_on_a_terminal() -> None:
    assert render("running", None) == "running"
    assert render("running", 0.5, width=10) == "running [#####.....]  50.0%"
    assert render("running", 1, width=4) == "running [####] 100.0%"
    assert render("running", 7) == "running 7"
    assert render("running", {"done": 3}) == 'running {"done": 3}'
    out = io.StringIO()
    show = Progress(out, tty=True)
    show.state({"id": "j", "status": "running", "progress": None})
    show.progress(0.25)
    show.done()
    assert out.getvalue().split("\r\x1b[K")[1:] == [
        "running",
        "running " + render("", 0.25)[1:] + "\n",
    ]
    plain = io.StringIO()
    show = Progress(plain, tty=False)
    show.state({"id": "j", "status": "running", "progress": None})
    show.progress(0.25)
    show.state({"id": "j", "status": "completed", "progress": 0.25})
    show.done()
    assert plain.getvalue() == "j: running\nprogress: 0.25\nj: completed\n"


async def test_the_shared_log_stays_bounded_and_drops_only_laggards(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = trio_tasks.Processor(trio_tasks.TaskRegistry()).events
    hub.max_events = 100
    fast, slow = hub.subscribe(), hub.subscribe()
    job = trio_tasks.Job(
        id="j", type="t", priority=trio_tasks.Priority.LOW, payload={}, max_attempts=1,
        timeout=1.0, created_at=1.0,
    )  # fmt: skip
    read = b""
    for i in range(1000):
        job.progress = i
        hub.on_job_event("progress", job)
        read += await fast.next_chunk()
        assert len(hub._events) <= hub.max_events + 25
    assert read.count(b"event: progress\n") == 1000
    assert slow.dropped
    assert not fast.dropped
    assert await slow.next_chunk() == b""
    assert hub.subscribers == 1
