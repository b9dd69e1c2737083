"""The Redis broker's delivery rule, outcomes under a partition, the node registry, and
checkpoints: at broker level, against a real redis-server."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing
from test_redis_broker import Host, new_job, raw_client, running, until

from trio_tasks import JobStatus
from trio_tasks._stats import WorkerStats
from trio_tasks.brokers._base import RecordStatus
from trio_tasks.brokers._redis import RedisBroker
from trio_tasks.brokers._redis_keys import RedisKeys
from trio_tasks.brokers._redis_link import parse_redis_url

pytestmark = pytest.mark.redis


async def test_every_lease_reaches_a_worker_or_is_handed_back(redis_url: str) -> None:
    keys = RedisKeys.for_namespace(parse_redis_url(redis_url).namespace or "")
    delivered: list[str] = []
    total = 200
    rng = random.Random(7)
    with trio.fail_after(40):
        async with raw_client(redis_url) as redis:
            async with (
                running(RedisBroker(redis_url, max_concurrency=10_000)) as producer,
                running(RedisBroker(redis_url, max_concurrency=10_000)) as node,
            ):

                async def worker(name: str) -> None:
                    while True:
                        delivery = await node.fetch(name)
                        delivered.append(delivery.job.id)
                        with trio.CancelScope(shield=True):
                            done = await node.complete(delivery, name)
                        assert done.status is RecordStatus.RECORDED

                async with trio.open_nursery() as nursery:
                    scopes = []
                    for i in range(12):
                        scope = trio.CancelScope()
                        scopes.append(scope)

                        async def run(scope: trio.CancelScope = scope, i: int = i) -> None:
                            with scope:
                                await worker(f"w{i}")

                        nursery.start_soon(run)
                    for _ in range(20):
                        # Submissions from the node itself lease for its idle workers,
                        # the producer's wake its feeder; workers leave meanwhile, waiting
                        # or with a job leased for them along with their last outcome.
                        submitter = node if rng.random() < 0.5 else producer
                        await submitter.enqueue([new_job() for _ in range(total // 20)])
                        await trio.sleep(rng.uniform(0, 0.02))
                        rng.choice(scopes).cancel()
                    await trio.sleep(0.3)
                    nursery.cancel_scope.cancel()
            queued = sum([await redis.llen(q) for q in keys.queues])
            assert await redis.zcard(keys.running) == 0
            stats = await redis.hgetall(keys.stats)
            ids = await redis.zrange(keys.index, 0, -1)
            statuses = Counter([await redis.hget(keys.job(job_id), "status") for job_id in ids])
            attempts = [int(await redis.hget(keys.job(i), "attempts") or 0) for i in ids]
    assert len(delivered) == len(set(delivered))
    assert int(stats["submitted"]) == total
    assert int(stats.get("completed", 0)) == len(delivered)
    assert statuses == Counter({'"completed"': len(delivered), '"pending"': queued}) - Counter()
    assert len(delivered) + queued == total
    assert sum(attempts) == len(delivered)  # a hand-back does not count an attempt


async def test_outcomes_counted_as_recorded_equal_what_redis_recorded_across_a_partition(
    redis_server_url: str, redis_url: str
) -> None:
    from redis_server import TcpProxy, address, through

    keys = RedisKeys.for_namespace(parse_redis_url(redis_url).namespace or "")
    total = 30
    recorded: Counter[str] = Counter()
    other: Counter[RecordStatus] = Counter()
    proxy = TcpProxy(*address(redis_server_url))
    options: dict[str, Any] = {"lease": 1.0, "retry_cap": 0.1, "poll_interval": 0.1}

    async def work(broker: RedisBroker, name: str) -> None:
        while True:
            delivery = await broker.fetch(name)
            await trio.sleep(0.05)
            with trio.CancelScope(shield=True):
                outcome = await broker.complete(delivery, name)
            if outcome.status is RecordStatus.RECORDED:
                recorded[name[0]] += 1
            else:
                other[outcome.status] += 1

    with trio.fail_after(40):
        async with trio.open_nursery() as outer:
            port = await outer.start(proxy.run)
            cut_off = RedisBroker(through(redis_url, port), outcome_timeout=0.3, **options)
            async with (
                raw_client(redis_url) as redis,
                running(cut_off) as a,
                running(RedisBroker(redis_url, **options)) as b,
            ):
                await b.enqueue([new_job() for _ in range(total)])
                async with trio.open_nursery() as workers:
                    for i in range(3):
                        workers.start_soon(work, a, f"a{i}")
                    await until(lambda: recorded["a"] >= 3)
                    proxy.cut()  # outcomes of a give up; its leases expire; b runs them
                    workers.start_soon(work, b, "b0")
                    await trio.sleep(1.5)
                    proxy.heal()

                    async def all_completed() -> bool:
                        return int(await redis.hget(keys.stats, "completed") or 0) >= total

                    await until(all_completed, timeout=30)
                    await trio.sleep(0.2)
                    workers.cancel_scope.cancel()
                stats = await redis.hgetall(keys.stats)
            outer.cancel_scope.cancel()
    assert other[RecordStatus.NOT_RECORDED] >= 1
    assert sum(recorded.values()) == int(stats["completed"]) == total


async def test_the_node_registry_lists_live_nodes_with_their_workers(redis_url: str) -> None:
    worker = WorkerStats("worker-1", "busy", "job-1", 3, 2, 1)
    host = Host()
    host.worker_list = (worker,)
    host.counter_values = {"completed": 2, "failed": 1}
    with trio.fail_after(20):
        async with running(RedisBroker(redis_url, node_id="b", lease=0.6)) as b:
            async with running(RedisBroker(redis_url, node_id="a", lease=0.6), host=host):
                view = await b.cluster()  # a registered itself at start
                assert [n.id for n in view.nodes] == ["a", "b"]
                assert view.nodes[0].workers == (worker,)
                assert view.nodes[0].counters == {"completed": 2, "failed": 1}
                assert view.totals == dict.fromkeys(
                    ("submitted", "completed", "failed", "retried", "cancelled", "leases_expired"),
                    0,
                )
                host.counter_values = {"completed": 5}
                await trio.sleep(0.4)  # a heartbeat (every lease / 3)
                view = await b.cluster()
                assert view.nodes[0].counters == {"completed": 5}
            # A clean stop leaves the registry at once.
            assert [n.id for n in (await b.cluster()).nodes] == ["b"]


async def test_broker_methods_are_checkpoints(redis_url: str) -> None:
    with trio.fail_after(20):
        async with running(RedisBroker(redis_url)) as broker:
            job = new_job()
            await broker.enqueue([job])
            with trio.testing.assert_checkpoints():
                await broker.set_progress(job, 0.5)  # not leased here: no write
            with trio.testing.assert_checkpoints():
                await broker.list_jobs(status=None, job_type=None, limit=0)
            with trio.testing.assert_checkpoints():
                await broker.cluster()
            with trio.testing.assert_checkpoints():
                await broker.get(job.id)
            delivery = await broker.fetch("w")
            with trio.testing.assert_checkpoints():
                await broker.set_progress(delivery.job, 1)
            with trio.testing.assert_checkpoints():
                recorded = await broker.complete(delivery, None)
            assert recorded.status is RecordStatus.RECORDED
            assert recorded.job.status is JobStatus.COMPLETED
