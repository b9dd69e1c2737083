"""Retention of finished jobs bounded in bytes on the Redis broker (``RESULT_MAX_BYTES``).

Each finished job's size (``_redis.lua``: ``job_size``, the memory broker's ``record_size``
measured on the stored JSON) is recorded in ``sizes`` and summed in ``finished_bytes``; these
tests check, against a real ``redis-server``, that the jobs kept stay within the bound, the
oldest go first (completed before failed), and the counter stays the sum of the sizes of the
jobs kept through completions, failures, retries, cancellations, expiries and quarantine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
import pytest
import trio
from test_redis_broker import raw_client

import trio_tasks
from trio_tasks import JobStatus
from trio_tasks._config import Config
from trio_tasks.brokers import make_broker
from trio_tasks.brokers._redis import RedisBroker
from trio_tasks.brokers._redis_keys import RedisKeys
from trio_tasks.brokers._redis_link import parse_redis_url
from trio_tasks.brokers._retention import RECORD_OVERHEAD, record_size

pytestmark = pytest.mark.redis

KIB = 1024
BOUND = 20 * KIB


def registry() -> trio_tasks.TaskRegistry:
    tasks = trio_tasks.TaskRegistry()

    @tasks.task("echo")
    async def echo(ctx: trio_tasks.JobContext) -> str:
        await trio.lowlevel.checkpoint()
        return "r" * KIB

    @tasks.task("fail")
    async def fail(ctx: trio_tasks.JobContext) -> None:
        raise RuntimeError("e" * KIB)

    return tasks


@asynccontextmanager
async def node(
    url: str, *, workers: int = 1, **options: Any
) -> AsyncIterator[trio_tasks.Processor]:
    settings: dict[str, Any] = {
        "max_concurrency": 10_000,
        "retry_cap": 0.2,
        "result_max_jobs": 1000,
        "result_max_bytes": BOUND,
    }
    settings.update(options)
    broker = RedisBroker(url, **settings)
    async with trio_tasks.open_processor(
        registry(), broker=broker, workers=workers, retry_delay=0, shutdown_timeout=5
    ) as processor:
        yield processor


def keys_of(url: str) -> RedisKeys:
    return RedisKeys.for_namespace(parse_redis_url(url).namespace or "default")


async def expected_size(redis: coredis.Redis[str], keys: RedisKeys, job_id: str) -> int:
    """What ``job_size`` measures, recomputed from the stored hash."""
    size = RECORD_OVERHEAD
    for field in ("payload", "result", "error"):
        value = await redis.hget(keys.job(job_id), field)
        if value is not None and value != "null":
            size += len(value.encode())
    return size


async def check_accounting(redis: coredis.Redis[str], keys: RedisKeys) -> dict[str, int]:
    """``sizes`` holds exactly the ids of ``finished``, each the size of its stored job (if
    the job's key has not expired yet), and ``finished_bytes`` is their sum. Returns the
    sizes."""
    finished = set(await redis.zrange(keys.finished, 0, -1))
    sizes = {k: int(v) for k, v in (await redis.hgetall(keys.sizes)).items()}
    assert set(sizes) == finished
    for job_id, size in sizes.items():
        if await redis.exists([keys.job(job_id)]):  # else expired, not yet seen by evict
            assert size == await expected_size(redis, keys, job_id), job_id
    assert int(await redis.get(keys.finished_bytes) or 0) == sum(sizes.values())
    return sizes


def payload() -> dict[str, str]:
    return {"blob": "p" * KIB}


def test_make_broker_passes_result_max_bytes() -> None:
    broker = make_broker("redis://h:1/0", Config(result_max_bytes=5 * KIB))
    assert isinstance(broker, RedisBroker)
    assert broker._node.scripts.max_bytes == 5 * KIB


async def test_completed_jobs_are_kept_within_the_byte_bound_oldest_first(redis_url: str) -> None:
    keys = keys_of(redis_url)
    with trio.fail_after(30):
        async with raw_client(redis_url) as redis, node(redis_url) as p:
            ids = []
            for n in range(30):
                job = await p.submit("echo", payload(), job_id=f"job-{n}")
                done = await p.wait(job.id)
                assert done.status is JobStatus.COMPLETED
                ids.append(job.id)
                sizes = await check_accounting(redis, keys)
                assert sum(sizes.values()) <= BOUND
            kept = [job.id for job in await p.list_jobs(limit=100)]
            # ~2.6 KiB each (1 KiB payload, 1 KiB result, 512 bytes): the newest seven fit.
            assert kept == ids[::-1][: len(kept)]
            assert 6 <= len(kept) <= 8
            # The same quantity as the memory broker's, but for JSON separators.
            last = await p.broker.get(ids[-1])
            assert last is not None
            assert abs(sizes[last.id] - record_size(last)) <= 4
            assert await redis.exists([keys.job(ids[0])]) == 0


async def test_failed_jobs_go_after_completed_ones_and_retry_or_cancel_keep_the_sum(
    redis_url: str,
) -> None:
    keys = keys_of(redis_url)
    with trio.fail_after(30):
        async with (
            raw_client(redis_url) as redis,
            node(redis_url, result_ttl=60, failed_ttl=600) as p,
        ):
            failed = await p.submit("fail", payload(), retries=0, job_id="failed")
            assert (await p.wait(failed.id)).status is JobStatus.FAILED
            for n in range(15):
                await p.wait((await p.submit("echo", payload(), job_id=f"c-{n}")).id)
            sizes = await check_accounting(redis, keys)
            assert "failed" in sizes
            assert "c-0" not in sizes
            assert sum(sizes.values()) <= BOUND
        # Checked with no worker running, so no job ends between the reads of the check.
        async with raw_client(redis_url) as redis, node(redis_url, workers=0) as producer:
            # A retry takes the job out of retention; it counts again when it ends.
            await producer.retry("failed")
            assert "failed" not in await check_accounting(redis, keys)
            assert (await producer.cancel("failed")).status is JobStatus.CANCELLED
            assert "failed" in await check_accounting(redis, keys)
            # Cancelled jobs count too (their payload), and evict the oldest completed ones.
            for n in range(5):
                job = await producer.submit("echo", payload(), delay=60, job_id=f"x-{n}")
                assert (await producer.cancel(job.id)).status is JobStatus.CANCELLED
                sizes = await check_accounting(redis, keys)
                assert sum(sizes.values()) <= BOUND
            assert {f"x-{n}" for n in range(5)} <= set(sizes)
        async with raw_client(redis_url) as redis:
            async with node(redis_url, result_ttl=60, failed_ttl=600) as p:
                await p.retry("failed")
                assert (await p.wait("failed")).status is JobStatus.FAILED
            sizes = await check_accounting(redis, keys)
            assert "failed" in sizes
            assert sum(sizes.values()) <= BOUND


async def test_expired_jobs_leave_the_sum_and_a_reused_id_survives(redis_url: str) -> None:
    keys = keys_of(redis_url)
    with trio.fail_after(30):
        async with raw_client(redis_url) as redis:
            async with node(redis_url, result_ttl=0.5) as p:
                for n in range(3):
                    await p.wait((await p.submit("echo", payload(), job_id=f"e-{n}")).id)
                assert len(await check_accounting(redis, keys)) == 3
            await trio.sleep(0.8)  # the job keys expire (PEXPIRE), still in finished
            assert await redis.exists([keys.job("e-0")]) == 0
            assert int(await redis.get(keys.finished_bytes) or 0) > 0
            async with node(redis_url, workers=0, result_ttl=0.5) as producer:
                # Reused before eviction saw the expiry: the stale entry goes, not the job.
                await producer.submit("echo", payload(), delay=60, job_id="e-0")
                assert "e-0" not in await check_accounting(redis, keys)
                # list finds the expired ones and takes their sizes out.
                assert [j.id for j in await producer.list_jobs()] == ["e-0"]
                assert await check_accounting(redis, keys) == {}
                # Eviction (here by a cancellation) does not touch the reused id.
                await producer.submit("echo", payload(), delay=60, job_id="other")
                await producer.cancel("other")
                assert (await producer.broker.get("e-0")) is not None
                await trio.sleep(0.8)
                await producer.submit("echo", payload(), delay=60, job_id="third")
                await producer.cancel("third")  # evicts "other" by age, and its size
                sizes = await check_accounting(redis, keys)
                assert set(sizes) == {"third"}
                assert (await producer.broker.get("e-0")) is not None


async def test_a_job_larger_than_the_bound_is_evicted_at_once(redis_url: str) -> None:
    keys = keys_of(redis_url)
    with trio.fail_after(20):
        async with raw_client(redis_url) as redis, node(redis_url, workers=0) as p:
            job = await p.submit("echo", {"blob": "p" * 2 * BOUND}, delay=60)
            cancelled = await p.cancel(job.id)
            assert cancelled.status is JobStatus.CANCELLED
            assert await check_accounting(redis, keys) == {}
            assert await p.broker.get(job.id) is None
