"""Corrupt job records in Redis never stop a node: they are quarantined as failed jobs.

Each test writes a bad record with raw Redis commands into the namespace's keys (as a newer
release or a bad write would), next to good jobs, and runs a real node on a real redis-server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from test_redis_broker import new_job, raw_client, recording_registry, running, until

import trio_tasks
from trio_tasks import JobStatus
from trio_tasks._job import CORRUPT_RECORD, RECORD_FIELDS, job_to_record
from trio_tasks.brokers._redis import RedisBroker
from trio_tasks.brokers._redis_keys import RedisKeys
from trio_tasks.brokers._redis_link import parse_redis_url

pytestmark = pytest.mark.redis


def keys_of(url: str) -> RedisKeys:
    return RedisKeys.for_namespace(parse_redis_url(url).namespace or "default")


def stored(**changes: str) -> dict[str, str]:
    """A good job's hash (each value JSON), with ``changes`` (raw stored values) applied."""
    record = {name: json.dumps(value) for name, value in job_to_record(new_job()).items()}
    record.update(changes)
    return record


#: name -> (the raw hash or None for a key of another type, words the error must contain)
CASES: dict[str, tuple[dict[str, str] | None, str]] = {
    "every field garbage": ({name: "not json {" for name in RECORD_FIELDS}, "not JSON"),
    "wrong schema version": (stored(v="99"), "schema 99"),
    "truncated payload": (stored(payload='{"a": 1'), "'payload'"),
    "garbage priority": (stored(priority="9"), "'priority'"),
    "key of another type": (None, "holds a string"),
}
#: Read before it is leased (leasing would overwrite the status).
UNLEASED_CASES = {**CASES, "unknown status": (stored(status='"zombie"'), "'status'")}


async def plant(redis: Any, keys: RedisKeys, job_id: str, record: dict[str, str] | None) -> None:
    """Write a bad job ``job_id`` as a submission would have: its key, its queue, the index."""
    if record is None:
        await redis.set(keys.job(job_id), "not a hash")
    else:
        await redis.hset(keys.job(job_id), {**record, "id": json.dumps(job_id)})
    await redis.rpush(keys.queues[1], [job_id])
    await redis.zadd(keys.index, {job_id: 0})


@pytest.mark.parametrize("case", list(CASES))
async def test_a_corrupt_queued_record_fails_alone_and_the_node_goes_on(
    redis_url: str, case: str
) -> None:
    record, words = CASES[case]
    runs: list[str] = []
    keys = keys_of(redis_url)
    with trio.fail_after(30):
        async with raw_client(redis_url) as redis:
            async with trio_tasks.open_processor(
                recording_registry(runs), broker=redis_url, workers=3, shutdown_timeout=5
            ) as processor:
                before = [await processor.submit("noop") for _ in range(5)]
                await plant(redis, keys, "bad-1", record)
                after = [await processor.submit("noop") for _ in range(5)]
                for job in before + after:
                    assert (await processor.wait(job.id)).status is JobStatus.COMPLETED
                await until(lambda: redis.exists([keys.quarantine("bad-1")]))
                bad = await processor.get("bad-1")
                failed = await processor.list_jobs(status="failed")
                assert (await processor.wait("bad-1")).status is JobStatus.FAILED
                assert processor.broker.health() is None
            assert await redis.zcard(keys.running) == 0
            assert sum([await redis.llen(q) for q in keys.queues]) == 0
            assert await redis.hget(keys.stats, "failed") == "1"
    assert sorted(runs) == sorted(j.id for j in before + after)
    assert bad.status is JobStatus.FAILED
    assert bad.error is not None
    assert bad.error.type == CORRUPT_RECORD
    assert words in bad.error.message
    assert [j.id for j in failed] == ["bad-1"]


async def test_corrupt_records_are_answered_by_get_list_cancel_and_wait(redis_url: str) -> None:
    keys = keys_of(redis_url)
    with trio.fail_after(20):
        async with raw_client(redis_url) as redis, running(RedisBroker(redis_url)) as broker:
            good = new_job()
            await broker.enqueue([good])
            for job_id, (record, _) in UNLEASED_CASES.items():
                job_id = job_id.replace(" ", "-")
                if record is None:
                    await redis.set(keys.job(job_id), "x")
                else:
                    await redis.hset(keys.job(job_id), {**record, "id": json.dumps(job_id)})
                await redis.zadd(keys.index, {job_id: 1})
            # Listing quarantines each (once); a filtered list sees those whose status is not
            # one at once, the others once they were read.
            some = await broker.list_jobs(status=JobStatus.FAILED, job_type=None, limit=50)
            assert {j.id for j in some} == {
                "every-field-garbage",
                "unknown-status",
                "key-of-another-type",
            }
            listed = await broker.list_jobs(status=None, job_type=None, limit=50)
            assert len(listed) == len(UNLEASED_CASES) + 1
            failed = await broker.list_jobs(status=JobStatus.FAILED, job_type=None, limit=50)
            assert len(failed) == len(UNLEASED_CASES)
            assert {j.error.type for j in failed if j.error} == {CORRUPT_RECORD}
            assert (await broker.get(good.id)).status is JobStatus.PENDING  # type: ignore[union-attr]
            assert await redis.hget(keys.stats, "failed") == str(len(UNLEASED_CASES))
            with pytest.raises(trio_tasks.JobAlreadyFinished):
                await broker.cancel("unknown-status")
            assert (await broker.wait("truncated-payload")).status is JobStatus.FAILED
            # A job whose record is corrupted later is read as failed too: get and cancel.
            victim, other = new_job(), new_job()
            await broker.enqueue([victim, other])
            await redis.hset(keys.job(victim.id), {"payload": "{nope"})
            await redis.hset(keys.job(other.id), {"status": '"zombie"'})
            found = await broker.get(victim.id)
            assert found is not None
            assert found.status is JobStatus.FAILED
            assert found.error is not None
            assert "'payload'" in found.error.message
            with pytest.raises(trio_tasks.JobAlreadyFinished):
                await broker.cancel(other.id)
            assert await redis.llen(keys.queues[1]) == 1  # only the good job is queued
            assert await redis.hget(keys.stats, "failed") == str(len(UNLEASED_CASES) + 2)


async def test_a_missing_hash_in_a_queue_is_skipped(redis_url: str) -> None:
    runs: list[str] = []
    keys = keys_of(redis_url)
    with trio.fail_after(20):
        async with raw_client(redis_url) as redis:
            await redis.rpush(keys.queues[1], ["ghost-1", "ghost-2"])
            async with trio_tasks.open_processor(
                recording_registry(runs), broker=redis_url, workers=2
            ) as processor:
                jobs = [await processor.submit("noop") for _ in range(4)]
                for job in jobs:
                    assert (await processor.wait(job.id)).status is JobStatus.COMPLETED
                with pytest.raises(trio_tasks.JobNotFound):
                    await processor.get("ghost-1")
            assert sum([await redis.llen(q) for q in keys.queues]) == 0
            assert await redis.zcard(keys.running) == 0
    assert sorted(runs) == sorted(j.id for j in jobs)


async def test_a_record_corrupted_while_running_is_quarantined_by_the_reaper(
    redis_url: str,
) -> None:
    keys = keys_of(redis_url)
    with trio.fail_after(20):
        async with raw_client(redis_url) as redis:
            options: dict[str, Any] = {"lease": 0.5, "retry_cap": 0.1, "poll_interval": 0.05}
            async with running(RedisBroker(redis_url, **options)) as a:
                bad, good = new_job(), new_job()
                await a.enqueue([bad, good])
                first = await a.fetch("w1")
                second = await a.fetch("w2")
                held = {first.job.id: first, second.job.id: second}
                # Corrupted under the node's feet, and its node stops renewing it.
                await redis.hset(keys.job(bad.id), {"attempts": '"many"', "status": '"??"'})
                del a._node.active[bad.id]
                final = await a.wait(bad.id)
                assert final.status is JobStatus.FAILED
                assert final.error is not None
                assert final.error.type == CORRUPT_RECORD
                lost = await a.complete(held[bad.id], "late")
                assert lost.status.value == "lease_lost"
                done = await a.complete(held[good.id], "ok")
                assert done.status.value == "recorded"
            assert await redis.zcard(keys.running) == 0
            assert await redis.exists([keys.quarantine(bad.id)]) == 1


async def test_a_bad_lease_reply_goes_to_the_next_job_for_the_same_worker(redis_url: str) -> None:
    keys = keys_of(redis_url)
    with trio.fail_after(20):
        async with raw_client(redis_url) as redis, running(RedisBroker(redis_url)) as broker:
            await plant(redis, keys, "bad-1", CASES["truncated payload"][0])
            await plant(redis, keys, "bad-2", None)
            good = new_job()
            await broker.enqueue([good])
            delivery = await broker.fetch("w")
            assert delivery.job.id == good.id
            quarantined = [keys.quarantine("bad-1"), keys.quarantine("bad-2")]
            await until(lambda: _count(redis.exists(quarantined), 2))
            assert (await broker.complete(delivery, 1)).status.value == "recorded"
            assert broker.health() is None


async def _count(pending: Any, n: int) -> bool:
    return bool(await pending == n)
