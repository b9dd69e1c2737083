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
from trio_tasks._events import TICK
from trio_tasks._job import format_time, job_to_json


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def a_hub(rate: int | None = None) -> trio_tasks.EventHub:
    hub = trio_tasks.Processor(trio_tasks.TaskRegistry()).events
    if rate is not None:
        hub.summary_rate = rate
    return hub


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
    seen = frames(await every.next_chunk())
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
    (_, data), *_ = frames(await every.next_chunk())
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
    chunk = await every.next_chunk()
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
        seen = frames(await reader.next_chunk())
        assert [d["id"] for name, d in seen if name == "state"] == [f"job-{n}" for n in range(5)]
        assert seen[-1] == ("skipped", {"changes": 15})
    assert hub.skipped_count == 15
    # The next tick starts afresh.
    await trio.sleep(TICK)
    for number in range(20, 23):
        hub.on_job_event("submitted", a_job(number))
    assert [name for name, _ in frames(await every.next_chunk())] == ["state"] * 3


async def test_the_short_way_counts_the_rest_too(autojump_clock: trio.testing.MockClock) -> None:
    # Readers without filters, no relay: the listener's short way (see EventHub.on_job_event).
    hub = a_hub(rate=100)
    every, also = hub.subscribe(), hub.subscribe()
    for number in range(12):
        hub.on_job_event("submitted", a_job(number))
    chunk = await every.next_chunk()
    assert chunk is await also.next_chunk()
    seen = frames(chunk)
    assert len(seen) == 6
    assert seen[-1] == ("skipped", {"changes": 7})


async def test_readers_of_full_records_get_every_change(
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
    whole = frames(await full.next_chunk())
    expected = [job_to_json(job) | {"status": s} for s in ("pending", "running") for job in jobs]
    assert [d for _, d in whole] == expected
    # While a reader of full records follows, nothing is skipped for the others either.
    seen = frames(await summaries.next_chunk())
    assert [d["status"] for _, d in seen] == ["running"] * 20


def test_the_summary_of_another_nodes_record() -> None:
    job = a_job(4, status=trio_tasks.JobStatus.FAILED, error=trio_tasks.JobError("m", "E"))
    data = orjson.dumps(job_to_json(job))
    assert orjson.loads(summary_of_json(data)) == summary_of(job)
    assert summary_of_json(b"[1]") == b"[1]"
    assert summary_of_json(b"not json") == b"not json"
