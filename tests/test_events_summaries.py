"""Summaries on ``GET /events`` (the default detail), through the hub on a MockClock: each tick
sends the newest state of each job that changed in it, as a summary of the values of that
moment; a tick takes at most its share of the summary rate and counts the rest
(``event: skipped``); readers of full records get every change whole."""

from __future__ import annotations

import json

import orjson
import pytest
import trio
import trio.testing
from test_events_ticks import a_job, frames

import trio_tasks
from trio_tasks._event_json import SUMMARY_FIELDS, summary_of_json
from trio_tasks._events import TICK, Subscription
from trio_tasks._job import format_time, job_to_json


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def a_hub(rate: int | None = None) -> trio_tasks.EventHub:
    hub = trio_tasks.Processor(trio_tasks.TaskRegistry()).events
    if rate is not None:
        hub.summary_rate = rate
    return hub


async def read(reader: Subscription) -> bytes:
    """The reader's next chunk; an error, not a hang, when none comes."""
    with trio.fail_after(5):
        return await reader.next_chunk()


def summary_of(job: trio_tasks.Job) -> dict[str, object]:
    record = job_to_json(job)
    return {name: record[name] for name in SUMMARY_FIELDS}


async def test_a_tick_sends_the_newest_state_of_each_job_in_the_order_of_their_last_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = a_hub()
    every = hub.subscribe()
    first, second = a_job(1), a_job(2)
    hub.on_job_event("submitted", first)
    hub.on_job_event("submitted", second)
    first.status, first.attempts, first.started_at = trio_tasks.JobStatus.RUNNING, 1, 1.7e9
    hub.on_job_event("started", first)
    first.progress = 0.5
    hub.on_job_event("progress", first)
    first.status, first.completed_at, first.result = trio_tasks.JobStatus.COMPLETED, 1.7e9 + 1, 7
    hub.on_job_event("completed", first)
    seen = frames(await read(every))
    assert seen == [
        ("state", summary_of(second)),
        ("progress", {"job_id": "job-1", "type": "t", "priority": "high", "progress": 0.5}),
        ("state", summary_of(first)),
    ]
    assert seen[2][1]["completed_at"] == format_time(1.7e9 + 1)


async def test_a_summary_holds_the_values_of_its_moment(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = a_hub()
    every = hub.subscribe()
    job = a_job(1, progress={"rows": [1, 2]}, status=trio_tasks.JobStatus.RUNNING)
    hub.on_job_event("started", job)
    job.progress["rows"].append(3)  # a handler changing its progress value in place
    job.error = trio_tasks.JobError("later", "E")
    (_, data), *_ = frames(await read(every))
    assert data["progress"] == {"rows": [1, 2]}
    assert data["error"] is None
    # A progress that is not a number is counted in what the hub holds.
    held = []
    for progress in (0.5, "x" * 10_000):
        other = a_hub()
        other.subscribe()
        other.on_job_event("started", a_job(1, progress=progress))
        held.append(other._bytes)
    assert held[1] >= held[0] + 10_000


async def test_a_summary_takes_what_orjson_refuses() -> None:
    hub = a_hub()
    every = hub.subscribe()
    job = a_job(1, progress=2**70, error=trio_tasks.JobError("bad \udcff byte", "E"))
    hub.on_job_event("failed", job)
    hub.close()
    chunk = await read(every)
    # JSON all the same (as the job's own JSON: the standard library's encoder, "\udcff").
    data = json.loads(chunk.decode().split("data: ", 1)[1])
    assert data["progress"] == 2**70
    assert data["error"]["message"] == "bad \udcff byte"
    assert data["created_at"] == format_time(job.created_at)
    assert data["error"]["type"] == "E"


async def test_a_tick_takes_at_most_its_share_of_the_rate_and_counts_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = a_hub(rate=100)  # 5 changes in a 50 ms tick
    every = hub.subscribe()
    high = hub.subscribe(priority="high")
    for number in range(20):
        hub.on_job_event("submitted", a_job(number))
    for reader in (every, high):
        seen = frames(await read(reader))
        assert [d["id"] for name, d in seen if name == "state"] == [f"job-{n}" for n in range(5)]
        assert seen[-1] == ("skipped", {"changes": 15})
    assert hub.skipped_count == 15
    # The next tick starts afresh.
    await trio.sleep(TICK)
    for number in range(20, 23):
        hub.on_job_event("submitted", a_job(number))
    assert [name for name, _ in frames(await read(every))] == ["state"] * 3


async def test_the_short_way_counts_the_rest_too(autojump_clock: trio.testing.MockClock) -> None:
    # Readers without filters, no relay: the listener's short way (see EventHub.on_job_event).
    hub = a_hub(rate=100)
    every, also = hub.subscribe(), hub.subscribe()
    for number in range(12):
        hub.on_job_event("submitted", a_job(number))
    chunk = await read(every)
    assert chunk is await read(also)
    seen = frames(chunk)
    assert len(seen) == 6
    assert seen[-1] == ("skipped", {"changes": 7})


async def test_readers_of_full_records_get_every_change_and_summaries_stay_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = a_hub(rate=100)
    summaries, full = hub.subscribe(), hub.subscribe(full=True)
    jobs = [a_job(number) for number in range(20)]
    for job in jobs:
        hub.on_job_event("submitted", job)
    for job in jobs:
        job.status = trio_tasks.JobStatus.RUNNING
        hub.on_job_event("started", job)
    whole = frames(await read(full))
    expected = [job_to_json(job) | {"status": s} for s in ("pending", "running") for job in jobs]
    assert [d for _, d in whole] == expected
    # The summaries keep their bound: the first five jobs (running: their later changes in
    # the tick are taken too), and a count of the other 30 changes.
    seen = frames(await read(summaries))
    assert [(d["id"], d["status"]) for _, d in seen[:-1]] == [
        (f"job-{n}", "running") for n in range(5)
    ]
    assert seen[-1] == ("skipped", {"changes": 30})


async def test_a_job_taken_in_a_tick_shows_its_newest_state_past_the_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = a_hub(rate=100)
    every = hub.subscribe()
    first = a_job(0)
    hub.on_job_event("submitted", first)
    for number in range(1, 10):
        hub.on_job_event("submitted", a_job(number))
    first.status, first.completed_at = trio_tasks.JobStatus.COMPLETED, 1.7e9
    hub.on_job_event("completed", first)
    seen = frames(await read(every))
    assert [(d["id"], d["status"]) for _, d in seen[:-1]] == [
        (f"job-{n}", "pending") for n in range(1, 5)
    ] + [("job-0", "completed")]
    assert seen[-1] == ("skipped", {"changes": 5})


async def test_a_reader_that_comes_mid_tick_is_told_what_it_missed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = a_hub(rate=100)
    first = hub.subscribe()
    for number in range(10):
        hub.on_job_event("submitted", a_job(number))
    second = hub.subscribe()  # after the tick's bound was reached
    for number in range(10, 30):
        hub.on_job_event("submitted", a_job(number))
    assert frames(await read(first))[-1] == ("skipped", {"changes": 25})
    assert frames(await read(second)) == [("skipped", {"changes": 20})]


async def test_the_count_of_what_a_tick_left_out_covers_every_job(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Documented: the bound is the node's, shared by its readers; a filtered reader is told
    # how many changes were left out, of any job that some reader takes.
    hub = a_hub(rate=100)
    every, failed = hub.subscribe(), hub.subscribe(status="failed")
    for number in range(10):
        hub.on_job_event("submitted", a_job(number))
    assert frames(await read(every))[-1] == ("skipped", {"changes": 5})
    assert frames(await read(failed)) == [("skipped", {"changes": 5})]


async def test_a_progress_no_encoder_takes_never_ends_the_streams(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = a_hub()
    every = hub.subscribe()
    huge = a_job(1, progress=10**5000, status=trio_tasks.JobStatus.RUNNING)
    odd = a_job(2, progress={"done": 3}, error=trio_tasks.JobError("bad \udcff", "E"))
    nan = a_job(3, progress=float("nan"), error=trio_tasks.JobError("bad \udcff", "E"))
    for job in (huge, odd, nan, a_job(4)):
        hub.on_job_event("started", job)
    chunk = (await read(every)).decode()
    # JSON a browser parses (no NaN), every job there.
    data = [json.loads(block.split("data: ", 1)[1]) for block in chunk.split("\n\n") if block]
    assert [(d["id"], d["progress"]) for d in data] == [
        ("job-1", None),
        ("job-2", {"done": 3}),
        ("job-3", None),
        ("job-4", None),
    ]
    assert "NaN" not in chunk


def test_the_summary_of_another_nodes_record() -> None:
    job = a_job(4, status=trio_tasks.JobStatus.FAILED, error=trio_tasks.JobError("m", "E"))
    data = orjson.dumps(job_to_json(job))
    assert orjson.loads(summary_of_json(data)) == summary_of(job)
    assert summary_of_json(b"[1]") == b"[1]"
    assert summary_of_json(b"not json") == b"not json"
