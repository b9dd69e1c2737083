"""The cost side of the live events: ``GET /events`` readers wake once a tick and share one text
per tick, a job's stream is not held back, the events' JSON is the API's, and on Redis nothing is
published while no node follows events."""

from __future__ import annotations

import math
import random
from typing import Any
from urllib.parse import parse_qs, urlsplit

import coredis
import orjson
import pytest
import trio
import trio.testing
from test_events import stream

import trio_tasks
from trio_tasks._event_json import FIELD_NAMES, SUMMARY_FIELDS, fast_time, job_record
from trio_tasks._events import TICK
from trio_tasks._job import JOB_FIELDS, format_time, job_to_json
from trio_tasks.http import create_app


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def quick_registry() -> trio_tasks.TaskRegistry:
    registry = trio_tasks.TaskRegistry()

    @registry.task("quick")
    async def quick(ctx: trio_tasks.JobContext) -> None:
        await trio.lowlevel.checkpoint()

    @registry.task("steps")
    async def steps(ctx: trio_tasks.JobContext) -> None:
        await ctx.set_progress(0.5)
        await trio.sleep(1)

    return registry


def frames(chunk: bytes) -> list[tuple[str, Any]]:
    """``(event, data)`` of every frame of one chunk."""
    found = []
    for block in chunk.decode().split("\n\n"):
        if block:
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            found.append((fields["event"], orjson.loads(fields["data"])))
    return found


@pytest.mark.parametrize("detail", ["summary", "full"])
async def test_the_events_of_one_tick_arrive_in_one_chunk_in_order(
    autojump_clock: trio.testing.MockClock, detail: str
) -> None:
    async with trio_tasks.open_processor(quick_registry(), workers=2) as processor:
        client = create_app(processor).test_client()
        async with stream(client, f"/events?detail={detail}") as every:
            assert (await every.next())[0] == "hello"
            submitted_at = trio.current_time()
            jobs = [a.job for a in await processor.submit_many(
                [trio_tasks.JobRequest.build("quick") for _ in range(5)]
            )]  # fmt: skip
            chunk = await every.connection.receive()
            # Woken once, at the end of the tick, with all of it.
            assert trio.current_time() - submitted_at == pytest.approx(TICK)
            seen = frames(chunk)
            if detail == "full":
                # Every change, in order, each the job's whole record.
                assert len(seen) == 5 * 3
                for job in jobs:
                    statuses = [d["status"] for name, d in seen if d["id"] == job.id]
                    assert statuses == ["pending", "running", "completed"]
                assert [d["id"] for _, d in seen[:5]] == [job.id for job in jobs]
                assert all("payload" in d for _, d in seen)
            else:
                # The newest state of each job, in the order they reached it.
                assert [d["status"] for _, d in seen] == ["completed"] * 5
                assert sorted(d["id"] for _, d in seen) == sorted(job.id for job in jobs)
                ends = [d["completed_at"] for _, d in seen]
                assert ends == sorted(ends)
                assert all(tuple(d) == SUMMARY_FIELDS for _, d in seen)
        processor.shutdown(grace=0)


async def test_a_job_stream_is_not_held_back_by_the_tick(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio_tasks.open_processor(quick_registry(), workers=1) as processor:
        client = create_app(processor).test_client()
        job = await processor.submit("steps", delay=2)
        async with stream(client, f"/jobs/{job.id}/events") as one:
            assert (await one.next())[1]["status"] == "scheduled"
            name, data = await one.next()
            assert (name, data["status"]) == ("state", "running")
            started = trio.current_time()
            assert (await one.next())[0] == "progress"
            assert trio.current_time() == started  # at once, not at the end of a tick
        processor.shutdown(grace=0)


def a_job(number: int, **changes: Any) -> trio_tasks.Job:
    values: dict[str, Any] = {
        "id": f"job-{number}",
        "type": "t",
        "priority": trio_tasks.Priority.HIGH,
        "payload": {"n": number},
        "max_attempts": 2,
        "timeout": 5.0,
        "created_at": 1_700_000_000.25 + number,
    }
    return trio_tasks.Job(**{**values, **changes})


async def test_readers_with_the_same_filters_share_one_text_per_tick(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = trio_tasks.Processor(trio_tasks.TaskRegistry()).events
    first, second = hub.subscribe(), hub.subscribe()
    high, also_high = hub.subscribe(priority="high"), hub.subscribe(priority="high")
    low = hub.subscribe(priority="low")
    hub.on_job_event("submitted", a_job(1))
    hub.on_job_event("submitted", a_job(2, priority=trio_tasks.Priority.LOW))
    chunks = [await s.next_chunk() for s in (first, second, high, also_high)]
    assert chunks[0] is chunks[1]  # the same object: built once
    assert chunks[2] is chunks[3]
    assert [d["id"] for _, d in frames(chunks[0])] == ["job-1", "job-2"]
    assert [d["id"] for _, d in frames(chunks[2])] == ["job-1"]
    assert [d["id"] for _, d in frames(await low.next_chunk())] == ["job-2"]


async def test_events_nobody_takes_are_not_encoded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = trio_tasks.Processor(trio_tasks.TaskRegistry()).events
    low = hub.subscribe(priority="low")
    one = hub.subscribe(job_id="job-7")
    for number in range(5):
        hub.on_job_event("submitted", a_job(number))  # high: no reader takes them
    assert hub.next_seq == 0
    hub.on_job_event("submitted", a_job(7))
    assert (await one.next_batch())[0].job_id == "job-7"
    assert hub.next_seq == 0  # to its job's reader only
    hub.on_job_event("submitted", a_job(8, priority=trio_tasks.Priority.LOW))
    assert [d["id"] for _, d in frames(await low.next_chunk())] == ["job-8"]


async def test_at_a_stop_the_readers_get_what_the_open_tick_holds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = trio_tasks.Processor(trio_tasks.TaskRegistry()).events
    every, one = hub.subscribe(), hub.subscribe(job_id="job-1")
    hub.on_job_event("submitted", a_job(1))
    started = trio.current_time()
    hub.close()
    assert [d["id"] for _, d in frames(await every.next_chunk())] == ["job-1"]
    assert [e.job_id for e in await one.next_batch()] == ["job-1"]
    assert trio.current_time() == started  # not held until the end of the tick
    assert await every.next_chunk() == b""
    assert await one.next_batch() == []
    assert hub.subscribers == 0


async def test_a_reader_that_falls_behind_across_ticks_is_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = trio_tasks.Processor(trio_tasks.TaskRegistry()).events
    hub.max_events = 40
    reader, stuck = hub.subscribe(), hub.subscribe()
    jobs = [a_job(number) for number in range(10)]
    for tick in range(10):
        for job in jobs:
            job.progress = tick
            hub.on_job_event("progress", job)
        assert len(frames(await reader.next_chunk())) == 10
    assert stuck.dropped
    assert not reader.dropped
    assert await stuck.next_chunk() == b""
    assert hub.dropped_count == 1


def test_the_events_json_is_the_api_json() -> None:
    assert tuple(f.name for f in JOB_FIELDS) == FIELD_NAMES
    job = a_job(
        3,
        status=trio_tasks.JobStatus.FAILED,
        attempts=2,
        started_at=1_700_000_100.0000005,
        completed_at=1_700_000_101.999_999_7,
        worker_id="w",
        error=trio_tasks.JobError("boom ü", "RuntimeError"),
        progress={"done": 1},
        meta={"k": "v"},
        errors=[{"attempt": 1, "time": None, "type": "E", "message": "m"}],
        result={"big": 2**70, "when": None},
    )
    assert orjson.loads(trio_tasks._event_json.job_json_bytes(job)) == job_to_json(job)
    assert list(job_record(job)) == list(job_to_json(job))
    rng = random.Random(13)
    samples = [0.0, 1.0, 0.5, 59.9999995, 1_700_000_000.0, 1_700_000_000.000_000_5, 2**31 + 0.75]
    samples += [rng.uniform(0, 4e9) for _ in range(20_000)]
    samples += [math.floor(s) + rng.randrange(1_000_000) / 1e6 for s in samples[:5000]]
    for timestamp in samples:
        assert fast_time(timestamp) == format_time(timestamp), timestamp
        assert fast_time(timestamp) == format_time(timestamp), timestamp  # cached


# -- Redis: the publish gate -------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_publishes_only_while_some_node_follows_events(
    redis_url: str, redis_server_url: str
) -> None:
    namespace = parse_qs(urlsplit(redis_url).query)["namespace"][0]
    channel = f"tt:{{{namespace}}}:events"
    heard: list[str] = []
    subscribed = trio.Event()

    async def count_messages() -> None:
        async with watcher.pubsub(channels=[channel], ignore_subscribe_messages=True) as pubsub:
            subscribed.set()
            async for message in pubsub:
                if message["type"] == "message":
                    heard.append(str(message["data"]))

    async def barrier() -> int:
        # Every message published before this one has been heard once this one is.
        marker = f"marker-{len(heard)}"
        await watcher.publish(channel, marker)
        while marker not in heard:  # noqa: ASYNC110
            await trio.sleep(0.01)
        return len([m for m in heard if not m.startswith("marker-")])

    registry = quick_registry()
    async with (
        coredis.Redis.from_url(redis_server_url.split("?")[0], decode_responses=True) as watcher,
        trio.open_nursery() as nursery,
        trio_tasks.open_processor(registry, broker=redis_url, workers=0) as a,
        trio_tasks.open_processor(registry, broker=redis_url, workers=2) as b,
    ):
        nursery.start_soon(count_messages)
        await subscribed.wait()
        with trio.fail_after(30):
            # Nobody follows events: B's jobs publish nothing, and B's hub does not listen.
            for _ in range(3):
                job = await b.submit("quick")
                await b.wait(job.id)
                await trio.sleep(0.5)  # more than one look of the gate each time, in all
            assert await barrier() == 0
            assert b.events.on_job_event not in b._listeners
            # A client of node A: node B starts publishing (within about a second).
            following = a.events.subscribe()
            await a.events.ready()
            while True:
                job = await b.submit("quick")
                await b.wait(job.id)
                if await barrier():
                    break
                await trio.sleep(0.2)
            # ... and A's reader gets B's events.
            ids: set[str] = set()
            last = await b.submit("quick")
            while last.id not in ids:
                ids |= {d.get("id", "") for _, d in frames(await following.next_chunk())}
            following.close()
        a.shutdown(grace=0)
        b.shutdown(grace=0)
        nursery.cancel_scope.cancel()
