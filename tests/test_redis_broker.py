"""Rules of the Redis broker that the memory broker does not have: many nodes, leases, fencing,
exactly-once promotion, cross-node cancellation, Redis outages.

Every test runs against a real ``redis-server`` (see ``conftest.py``) on the real clock, with
short leases, and is bounded by ``trio.fail_after``. "Nodes" are processors in this process,
each with its own broker and connection pool, exactly as separate processes would be.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
import pytest
import trio
import trio.lowlevel

import trio_tasks
from trio_tasks import JobStatus, Priority, QueueFull
from trio_tasks._clock import WallClock
from trio_tasks._config import Config
from trio_tasks._errors import BrokerUnavailable, InvalidValue
from trio_tasks._job import Job
from trio_tasks._request import new_job_id
from trio_tasks._stats import WorkerStats
from trio_tasks.brokers import make_broker
from trio_tasks.brokers._base import RecordStatus
from trio_tasks.brokers._redis import RedisBroker
from trio_tasks.brokers._redis_keys import RedisKeys
from trio_tasks.brokers._redis_link import parse_redis_url

pytestmark = pytest.mark.redis


# -- helpers ------------------------------------------------------------------------------------


@asynccontextmanager
async def raw_client(url: str) -> AsyncIterator[coredis.Redis[str]]:
    """A plain coredis client on the broker URL's server, to look at the keys directly."""
    async with coredis.Redis.from_url(
        parse_redis_url(url).client_url, decode_responses=True
    ) as client:
        yield client


@asynccontextmanager
async def node(
    registry: trio_tasks.TaskRegistry, url: str, *, workers: int, **broker_options: Any
) -> AsyncIterator[trio_tasks.Processor]:
    """One node: a processor with its own Redis broker (``broker_options`` for RedisBroker)."""
    options: dict[str, Any] = {"max_concurrency": 10_000, "retry_cap": 0.2}
    options.update(broker_options)
    broker = RedisBroker(url, **options)
    async with trio_tasks.open_processor(
        registry, broker=broker, workers=workers, retry_delay=0, shutdown_timeout=5
    ) as processor:
        yield processor


class Host:
    """What a processor offers a broker (:class:`~trio_tasks.brokers._base.BrokerHost`), for
    tests that drive a broker directly: cancellations are recorded in ``cancelled``."""

    def __init__(self, on_cancel: Any = None) -> None:
        self.clock = WallClock()
        self.cancelled: list[str] = []
        self._on_cancel = on_cancel
        self.worker_list: tuple[WorkerStats, ...] = ()
        self.counter_values: dict[str, int] = {}

    def on_cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)
        if self._on_cancel is not None:
            self._on_cancel(job_id)

    def workers(self) -> tuple[WorkerStats, ...]:
        return self.worker_list

    def counters(self) -> dict[str, int]:
        return dict(self.counter_values)


@asynccontextmanager
async def running(
    broker: RedisBroker, on_cancel: Any = None, host: Host | None = None
) -> AsyncIterator[RedisBroker]:
    """A broker running on its own, driven by the test through the Broker interface."""
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run, host or Host(on_cancel))
        yield broker
        nursery.cancel_scope.cancel()


def recording_registry(runs: list[str]) -> trio_tasks.TaskRegistry:
    """``noop`` records each run's job id in ``runs``."""
    registry = trio_tasks.TaskRegistry()

    @registry.task("noop")
    async def noop(ctx: trio_tasks.JobContext) -> str:
        runs.append(ctx.job.id)
        await trio.lowlevel.checkpoint()
        return ctx.job.id

    return registry


def new_job(job_type: str = "noop", priority: Priority = Priority.NORMAL) -> Job:
    """A job as the processor would build it, for tests driving a broker directly."""
    return Job(
        id=new_job_id(),
        type=job_type,
        priority=priority,
        payload={},
        max_attempts=4,
        timeout=60.0,
        created_at=time.time(),
    )


async def until(predicate: Any, timeout: float = 10.0, step: float = 0.01) -> None:
    """Wait until ``predicate()`` (sync or async) is true."""
    with trio.fail_after(timeout):
        while True:
            value = predicate()
            if not isinstance(value, bool):
                value = await value
            if value:
                return
            await trio.sleep(step)


# -- configuration and layout -------------------------------------------------------------------


def test_broker_urls_select_the_redis_broker() -> None:
    config = Config()
    for url in ("redis://h:6379/0", "rediss://:secret@h:6380/2", "unix:///tmp/redis.sock?db=1"):
        assert isinstance(make_broker(url, config), RedisBroker)
    broker = make_broker("redis://:pw@h:1/3?namespace=prod&lease=2s", config)
    assert isinstance(broker, RedisBroker)
    assert (broker.namespace, broker.lease) == ("prod", 2.0)
    assert broker.keys.prefix == "tt:{prod}:"
    options = parse_redis_url("redis://:pw@h:1/3?namespace=prod&lease=2s&max_connections=5")
    assert options.client_url == "redis://:pw@h:1/3?max_connections=5"
    with pytest.raises(InvalidValue, match="namespace"):
        parse_redis_url("redis://h/0?namespace=a b")
    with pytest.raises(InvalidValue, match="lease"):
        parse_redis_url("redis://h/0?lease=1ms")
    with pytest.raises(InvalidValue, match="not supported"):
        make_broker("kafka://h", config)


async def test_records_queues_and_retention_follow_the_documented_layout(redis_url: str) -> None:
    runs: list[str] = []
    registry = recording_registry(runs)
    ns = parse_redis_url(redis_url).namespace
    keys = RedisKeys.for_namespace(ns or "default")
    with trio.fail_after(20):
        async with (
            raw_client(redis_url) as redis,
            node(registry, redis_url, workers=0, result_ttl=30) as producer,
        ):
            urgent = await producer.submit("noop", priority="urgent")
            normal = await producer.submit("noop")
            later = await producer.submit("noop", delay=60)
            assert await redis.lrange(keys.queue(Priority.URGENT), 0, -1) == [urgent.id]
            assert await redis.lrange(keys.queue(Priority.NORMAL), 0, -1) == [normal.id]
            assert later.run_at is not None
            assert await redis.zscore(keys.scheduled, later.id) == pytest.approx(later.run_at)
            stored = await redis.hgetall(keys.job(normal.id))
            assert stored["status"] == '"pending"'
            assert stored["v"] == "1"
            assert stored["payload"] == "{}"
            assert "result" not in stored  # a new job's null fields are left out
            assert "run_at" not in stored
            assert (await producer.get(normal.id)).run_at is None
            assert (await producer.stats()).scheduled == 1
            async with node(registry, redis_url, workers=1, result_ttl=30) as worker:
                done = await worker.wait(urgent.id)
                await worker.wait(normal.id)
                assert done.status is JobStatus.COMPLETED
                assert done.result == urgent.id
                assert runs == [urgent.id, normal.id]
                assert 0 < await redis.pttl(keys.job(urgent.id)) <= 30_000
                assert await redis.zscore(keys.finished, urgent.id) is not None
                assert await redis.zcard(keys.running) == 0
                listed = await worker.list_jobs(limit=10)
                assert [j.id for j in listed] == [later.id, normal.id, urgent.id]
                assert [j.id for j in await worker.list_jobs(status="scheduled")] == [later.id]
                await worker.cancel(later.id)
                assert await redis.zcard(keys.scheduled) == 0


async def test_finished_jobs_are_evicted_beyond_result_max_jobs(redis_url: str) -> None:
    runs: list[str] = []
    with trio.fail_after(20):
        async with node(recording_registry(runs), redis_url, workers=1, result_max_jobs=3) as p:
            ids = []
            for _ in range(5):
                job = await p.submit("noop")
                await p.wait(job.id)
                ids.append(job.id)
            assert [await p.broker.get(i) is None for i in ids] == [True, True, False, False, False]


# -- admission, idempotency, priorities ---------------------------------------------------------


async def test_admission_bound_and_idempotency_are_cluster_wide(redis_url: str) -> None:
    registry = recording_registry([])
    with trio.fail_after(20):
        async with (
            node(registry, redis_url, workers=0, max_concurrency=3) as a,
            node(registry, redis_url, workers=0, max_concurrency=3) as b,
        ):
            first = await a.submit("noop", job_id="job-1")
            await a.submit("noop", delay=30)
            await b.submit("noop", priority="low")
            assert (await a.stats()).queued[Priority.LOW] == 1  # b's job, seen from a
            with pytest.raises(QueueFull):
                await b.submit("noop")
            batch = [trio_tasks.JobRequest.build("noop"), trio_tasks.JobRequest.build("noop")]
            with pytest.raises(QueueFull):
                await a.submit_many(batch)
            counts = await b.broker.counts()
            assert sum(counts.pending.values()) + counts.scheduled == 3
            # An existing id is not a new job: answered even at the bound, from either node.
            again = await b.submit("noop", job_id="job-1")
            assert again.id == first.id
            assert again.created_at == first.created_at
            admissions = await b.submit_many([trio_tasks.JobRequest.build("noop", job_id="job-1")])
            assert admissions[0].created is False


async def test_the_admission_bound_counts_unfinished_jobs_not_those_kept_finished(
    redis_url: str,
) -> None:
    # The index holds finished jobs too (retention): more entries than the bound there must
    # not refuse a submission while fewer jobs than the bound are unfinished.
    runs: list[str] = []
    with trio.fail_after(20):
        async with node(recording_registry(runs), redis_url, workers=1, max_concurrency=2) as p:
            for _ in range(3):
                await p.wait((await p.submit("noop")).id)
            assert len(runs) == 3
            p.shutdown(grace=0)
        async with node(recording_registry([]), redis_url, workers=0, max_concurrency=2) as p:
            await p.submit_many([trio_tasks.JobRequest.build("noop")] * 2)
            with pytest.raises(QueueFull):
                await p.submit("noop")


async def test_a_loop_of_submissions_lets_other_tasks_run_and_can_be_cancelled(
    redis_url: str,
) -> None:
    # The processor adds no schedule point of its own after a Redis submission
    # (Broker.enqueue_waits): the round trip is the checkpoint, both halves of it.
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    with trio.fail_after(20):
        async with node(recording_registry([]), redis_url, workers=0) as p:
            assert p.broker.enqueue_waits
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker)
                await trio.lowlevel.checkpoint()
                before = ticks
                for _ in range(50):
                    await p.submit("noop")
                assert ticks >= before + 50  # the ticker ran at every submission
                nursery.cancel_scope.cancel()
            with trio.CancelScope() as scope:
                scope.cancel()
                await p.submit("noop")  # a cancelled caller submits nothing
            assert scope.cancelled_caught
            assert (await p.broker.totals())["submitted"] == 50


async def test_a_large_batch_is_stored_in_order_queued_and_scheduled(redis_url: str) -> None:
    # More jobs than the Lua function puts into one command (1,000 values): every part of
    # the batch lands, in submission order per queue and in the index.
    keys = RedisKeys.for_namespace(parse_redis_url(redis_url).namespace or "default")
    requests = [
        trio_tasks.JobRequest.build(
            "noop",
            priority=("low", "normal", "high")[i % 3],
            delay=60 if i % 10 == 0 else None,
            job_id=f"big-{i % 2400}",  # the last 100 repeat earlier ids of the batch
        )
        for i in range(2500)
    ]
    with trio.fail_after(30):
        async with (
            raw_client(redis_url) as redis,
            node(recording_registry([]), redis_url, workers=0) as p,
        ):
            admissions = await p.submit_many(requests)
            assert [a.created for a in admissions] == [True] * 2400 + [False] * 100
            assert admissions[2450].job.id == "big-50"
            for priority in (Priority.LOW, Priority.NORMAL, Priority.HIGH):
                expected = [
                    f"big-{i}"
                    for i in range(2400)
                    if i % 10 and ("low", "normal", "high")[i % 3] == priority.name.lower()
                ]
                assert await redis.lrange(keys.queue(priority), 0, -1) == expected
            scheduled = await redis.zrange(keys.scheduled, 0, -1)
            assert sorted(scheduled) == sorted(f"big-{i}" for i in range(0, 2400, 10))
            index = list(await redis.zrange(keys.index, 0, -1))
            assert index == [f"big-{i}" for i in range(2400)]
            assert (await p.broker.totals())["submitted"] == 2400
            stored = await redis.hgetall(keys.job("big-8"))
            assert stored["status"] == '"pending"'
            assert stored["priority"] == str(int(Priority.HIGH))
            # A batch of new and existing ids: each key is looked at (not only "any exists").
            again = await p.submit_many(
                [trio_tasks.JobRequest.build("noop", job_id=i) for i in ("new-1", "big-5")]
            )
            assert [a.created for a in again] == [True, False]
            assert again[1].job.created_at == admissions[5].job.created_at


async def test_priority_is_strict_across_nodes_and_fifo_within_one(redis_url: str) -> None:
    registry = recording_registry([])
    submitted: list[trio_tasks.Job] = []
    with trio.fail_after(30):
        async with node(registry, redis_url, workers=0) as producer:
            for i in range(24):
                priority = list(Priority)[i % 4]
                submitted.append(await producer.submit("noop", priority=priority))
            async with (
                node(registry, redis_url, workers=2) as one,
                node(registry, redis_url, workers=2) as two,
            ):
                for job in submitted:
                    await producer.wait(job.id)
                assert one.workers()
                assert two.workers()
            async with raw_client(redis_url) as redis:
                keys = RedisKeys.for_namespace(parse_redis_url(redis_url).namespace or "")
                # Lease tokens come from one counter in Redis: they give the order of the pops.
                tokens = {
                    j.id: int(await redis.hget(keys.job(j.id), "tok") or 0) for j in submitted
                }
    popped = sorted(submitted, key=lambda j: tokens[j.id])
    expected = sorted(submitted, key=lambda j: (-int(j.priority), submitted.index(j)))
    assert [j.id for j in popped] == [j.id for j in expected]


async def test_a_submission_leases_for_its_own_idle_workers_by_priority(redis_url: str) -> None:
    cancelled: list[str] = []
    a = RedisBroker(redis_url, lease=5.0, retry_cap=0.2)
    b = RedisBroker(redis_url, lease=5.0, retry_cap=0.2)
    with trio.fail_after(20):
        async with running(a, on_cancel=cancelled.append), running(b), trio.open_nursery() as n:
            got: list[Any] = []

            async def fetch() -> None:
                got.append(await a.fetch("a-worker"))

            n.start_soon(fetch)
            # Its feeder found nothing and sleeps on the wake-up list; the worker is idle.
            await until(lambda: a._delivery.idle > 0)
            await trio.sleep(0.05)
            low, urgent = new_job(priority=Priority.LOW), new_job(priority=Priority.URGENT)
            await a.enqueue([low, urgent])
            # Leased by the enqueue call itself (no feeder round trip): the urgent job, not the
            # older low one, as a fetch would have.
            assert urgent.id in a._node.active
            assert low.id not in a._node.active
            assert a._delivery.idle == 0
            await until(lambda: bool(got))
            delivery = got[0]
            assert delivery.job.id == urgent.id
            assert delivery.job.status is JobStatus.RUNNING
            assert delivery.job.attempts == 1
            async with raw_client(redis_url) as redis:
                tok, owner, status = await redis.hmget(
                    a.keys.job(urgent.id), ["tok", "node", "status"]
                )
            assert (tok, owner, status) == (delivery.token, a.node_id, '"running"')
            assert (await b.counts()).pending[Priority.LOW] == 1
            # Cancelled from another node on its way to (or in) the worker: it reaches node a.
            outcome = await b.cancel(urgent.id)
            assert outcome.running
            await until(lambda: urgent.id in cancelled)
            done = await a.finish_cancelled(delivery)
            assert done.status is RecordStatus.RECORDED
            assert done.job.status is JobStatus.CANCELLED
            # The worker's next job is the low one, leased with a token of its own.
            following = await a.fetch("a-worker")
            assert following.job.id == low.id
            assert following.token != delivery.token
            finished = await a.complete(following, "ok")
            assert finished.status is RecordStatus.RECORDED
            assert finished.job.status is JobStatus.COMPLETED
            n.cancel_scope.cancel()


# -- leases, fencing, reaping, promotion ---------------------------------------------------------


async def test_a_partitioned_node_loses_its_lease_and_cannot_record_the_job(
    redis_server_url: str, redis_url: str
) -> None:
    from redis_server import TcpProxy, address, through

    proxy = TcpProxy(*address(redis_server_url))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            proxy_port = await nursery.start(proxy.run)
            via_proxy = through(redis_url, proxy_port)
            a = RedisBroker(via_proxy, lease=1.0, retry_cap=0.2)
            b = RedisBroker(redis_url, lease=1.0, retry_cap=0.2)
            async with running(a), running(b):
                job = new_job()
                await a.enqueue([job])
                lost = await a.fetch("a-worker")
                assert lost.job.attempts == 1
                proxy.cut()  # node a can no longer reach Redis: no heartbeat, no outcome
                await until(lambda: a.health() is not None, timeout=5)
                assert "redis unreachable" in (a.health() or "")
                # Its lease expires; node b takes the job back and runs it again.
                with trio.fail_after(6):
                    again = await b.fetch("b-worker")
                assert again.job.id == job.id
                assert again.job.attempts == 2
                assert again.token != lost.token
                proxy.heal()
                stale = await a.complete(lost, "from a")  # fenced: nothing is recorded
                assert stale.status is RecordStatus.LEASE_LOST
                assert stale.job.status is JobStatus.RUNNING
                assert stale.job.worker_id == "b-worker"
                assert (await b.get(job.id)).status is JobStatus.RUNNING  # type: ignore[union-attr]
                done = await b.complete(again, "from b")
                assert done.status is RecordStatus.RECORDED
                assert done.job.status is JobStatus.COMPLETED
                final = await a.get(job.id)
                assert final is not None
                assert final.result == "from b"
                assert final.attempts == 2
                await until(lambda: a.health() is None, timeout=5)
                totals = await b.totals()
                assert totals["leases_expired"] == 1
                assert totals["completed"] == 1
            nursery.cancel_scope.cancel()


async def test_a_lost_lease_on_the_last_attempt_fails_the_job(
    redis_server_url: str, redis_url: str
) -> None:
    from redis_server import TcpProxy, address, through

    proxy = TcpProxy(*address(redis_server_url))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            proxy_port = await nursery.start(proxy.run)
            via_proxy = through(redis_url, proxy_port)
            async with running(RedisBroker(via_proxy, lease=0.5, retry_cap=0.1)) as doomed:
                job = new_job()
                job.max_attempts = 1
                await doomed.enqueue([job])
                await doomed.fetch("w")
                proxy.cut()  # the node is gone for good: its lease runs out
                async with running(RedisBroker(redis_url, lease=0.5, retry_cap=0.1)) as other:
                    final = await other.wait(job.id)
            nursery.cancel_scope.cancel()
    assert final.status is JobStatus.FAILED
    assert final.error is not None
    assert final.error.type == "LeaseExpired"
    assert final.attempts == 1


async def test_due_jobs_are_promoted_exactly_once_by_racing_nodes(redis_url: str) -> None:
    runs: list[str] = []
    registry = recording_registry(runs)
    with trio.fail_after(30):
        async with (
            node(registry, redis_url, workers=2, poll_interval=0.01) as a,
            node(registry, redis_url, workers=2, poll_interval=0.01),
            node(registry, redis_url, workers=2, poll_interval=0.01),
        ):
            requests = [trio_tasks.JobRequest.build("noop", delay=0.3) for _ in range(150)]
            admissions = await a.submit_many(requests)
            assert {adm.job.status for adm in admissions} == {JobStatus.SCHEDULED}
            for admission in admissions:
                assert (await a.wait(admission.job.id)).status is JobStatus.COMPLETED
            totals = await a.broker.totals()  # type: ignore[attr-defined]
    counted = Counter(runs)
    assert len(counted) == 150
    assert set(counted.values()) == {1}
    assert totals["completed"] == 150


async def test_a_retry_waits_scheduled_and_runs_on_any_node(redis_url: str) -> None:
    attempts: list[int] = []
    registry = trio_tasks.TaskRegistry()

    @registry.task("flaky")
    async def flaky(ctx: trio_tasks.JobContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise trio_tasks.Retry(delay=0.2)
        return ctx.attempt

    with trio.fail_after(20):
        async with node(registry, redis_url, workers=1) as a, node(registry, redis_url, workers=1):
            job = await a.submit("flaky")
            await until(lambda: len(attempts) >= 1)
            done = await a.wait(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.result == 3
    assert done.attempts == 3
    assert attempts == [1, 2, 3]


# -- cancellation, waiting, shutdown -------------------------------------------------------------


async def test_cancel_on_one_node_stops_the_job_running_on_another(redis_url: str) -> None:
    started = trio.Event()
    stopped_at: list[float] = []
    registry = trio_tasks.TaskRegistry()

    @registry.task("long")
    async def long(ctx: trio_tasks.JobContext) -> None:
        started.set()
        try:
            await trio.sleep(60)
        finally:
            stopped_at.append(trio.current_time())

    with trio.fail_after(20):
        async with (
            node(registry, redis_url, workers=0) as api,
            node(registry, redis_url, workers=1) as worker,
        ):
            job = await api.submit("long")
            await started.wait()
            asked_at = trio.current_time()
            answer = await api.cancel(job.id)
            assert answer.status is JobStatus.RUNNING
            final = await api.wait(job.id)
            assert final.status is JobStatus.CANCELLED
            assert stopped_at
            assert stopped_at[0] - asked_at < 1.0
            assert worker.workers()[0].failed == 1
            with pytest.raises(trio_tasks.JobAlreadyFinished):
                await api.cancel(job.id)
            with pytest.raises(trio_tasks.JobNotFound):
                await api.cancel("no-such-job")


async def test_a_cancellation_whose_message_was_lost_still_reaches_the_node(
    redis_url: str,
) -> None:
    started = trio.Event()
    registry = trio_tasks.TaskRegistry()

    @registry.task("long")
    async def long(ctx: trio_tasks.JobContext) -> None:
        started.set()
        await trio.sleep(60)

    keys = RedisKeys.for_namespace(parse_redis_url(redis_url).namespace or "")
    with trio.fail_after(20):
        async with (
            raw_client(redis_url) as redis,
            node(registry, redis_url, workers=1, lease=0.6) as p,
        ):
            job = await p.submit("long")
            await started.wait()
            # What the cancel function does, minus the PUBLISH (as if the message were lost
            # while the node was reconnecting): the heartbeat finds the flag.
            await redis.hset(keys.job(job.id), {"cxl": "1"})
            final = await p.wait(job.id)
    assert final.status is JobStatus.CANCELLED


async def test_shutdown_hands_unfinished_jobs_back_to_other_nodes(redis_url: str) -> None:
    blocking = trio_tasks.TaskRegistry()
    started: list[str] = []

    @blocking.task("work")
    async def stuck(ctx: trio_tasks.JobContext) -> str:
        started.append(ctx.job.id)
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    quick = trio_tasks.TaskRegistry()

    @quick.task("work")
    async def fine(ctx: trio_tasks.JobContext) -> str:
        return "done"

    with trio.fail_after(20):
        async with node(blocking, redis_url, workers=2) as first:
            jobs = [await first.submit("work") for _ in range(5)]
            await until(lambda: len(started) == 2)
            first.shutdown(grace=0.1)
        assert first.abandoned == []
        async with node(quick, redis_url, workers=2) as second:
            finals = [await second.wait(job.id) for job in jobs]
    assert {f.status for f in finals} == {JobStatus.COMPLETED}
    by_id = {f.id: f for f in finals}
    assert sorted(by_id[i].attempts for i in by_id) == [1, 1, 1, 2, 2]
    assert {i for i in by_id if by_id[i].attempts == 2} == set(started)


async def test_a_wait_on_a_stopping_node_ends_with_shutting_down(redis_url: str) -> None:
    registry = recording_registry([])
    outcome: list[BaseException] = []

    async def wait_for(p: trio_tasks.Processor, job_id: str) -> None:
        try:
            await p.wait(job_id)
        except trio_tasks.ShuttingDown as exc:
            outcome.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery, node(registry, redis_url, workers=0) as producer:
            job = await producer.submit("noop")
            nursery.start_soon(wait_for, producer, job.id)
            await trio.sleep(0.05)
        # The node stopped: the waiter was told at once; the job stays queued in Redis.
        async with node(registry, redis_url, workers=0) as other:
            still = await other.get(job.id)
    assert len(outcome) == 1
    assert "still pending" in str(outcome[0])
    assert still.status is JobStatus.PENDING


# -- Redis outages --------------------------------------------------------------------------------


async def test_a_redis_restart_loses_and_duplicates_nothing(own_redis: Any) -> None:
    runs: list[str] = []
    registry = trio_tasks.TaskRegistry()

    @registry.task("step")
    async def step(ctx: trio_tasks.JobContext) -> str:
        runs.append(ctx.job.id)
        await trio.sleep(0.02)
        return ctx.job.id

    url = f"{own_redis.url}?namespace=restart"
    # The outage outlasts the lease: the leases held when Redis went away have expired when it
    # comes back, yet no job may run twice (the reaper waits for the nodes to renew).
    with trio.fail_after(45):
        async with node(registry, url, workers=4, lease=1.0, outcome_timeout=6.0) as p:
            admissions = await p.submit_many(
                [trio_tasks.JobRequest.build("step") for _ in range(200)]
            )
            await until(lambda: len(runs) >= 40)
            await trio.to_thread.run_sync(own_redis.stop)
            await until(lambda: p.broker.health() is not None, timeout=5)
            assert "redis unreachable" in (p.broker.health() or "")
            with pytest.raises(BrokerUnavailable):
                await p.submit("step")
            await trio.sleep(1.5)
            await trio.to_thread.run_sync(own_redis.start)
            finals = [await p.wait(a.job.id) for a in admissions]
            await until(lambda: p.broker.health() is None, timeout=5)
    assert {f.status for f in finals} == {JobStatus.COMPLETED}
    counted = Counter(runs)
    assert len(counted) == 200
    assert [job_id for job_id, n in counted.items() if n > 1] == []


async def test_a_node_started_while_redis_is_down_comes_up_with_it(own_redis: Any) -> None:
    runs: list[str] = []
    url = f"{own_redis.url}?namespace=late"
    await trio.to_thread.run_sync(own_redis.stop)
    with trio.fail_after(20):
        async with node(recording_registry(runs), url, workers=1) as p:
            assert p.broker.health() is not None
            with pytest.raises(BrokerUnavailable):
                await p.submit("noop")
            await trio.to_thread.run_sync(own_redis.start)
            await until(lambda: p.broker.health() is None, timeout=10)
            job = await p.submit("noop")
            assert (await p.wait(job.id)).status is JobStatus.COMPLETED
    assert runs == [job.id]


async def test_a_waiter_takes_the_final_record_from_the_announcement(redis_url: str) -> None:
    # The announcement on the done channel carries the job's final record: a waiter returns it
    # without reading Redis again (a round trip less between a job's end and its caller).
    with trio.fail_after(20):
        async with (
            running(RedisBroker(redis_url)) as waiter,
            running(RedisBroker(redis_url)) as worker,
        ):
            job = new_job()
            await waiter.enqueue([job])
            final: list[Job] = []

            async def wait() -> None:
                final.append(await waiter.wait(job.id))

            async with trio.open_nursery() as waits:
                waits.start_soon(wait)
                await trio.sleep(0.2)  # the waiter has read the job and asked for its end
                delivery = await worker.fetch("w")

                async def no_second_read(job_id: str) -> Any:
                    raise AssertionError("read again instead of using the announcement")

                waiter._scripts.watch = no_second_read  # type: ignore[method-assign]
                await worker.complete(delivery, {"answer": 42})
    assert final[0].status is JobStatus.COMPLETED
    assert final[0].result == {"answer": 42}


async def test_a_node_refuses_to_start_beside_live_nodes_of_an_older_version(
    redis_url: str,
) -> None:
    # A version 7 node takes version 8 records for corrupt and fails their jobs: no rolling
    # upgrade across versions. Its registry entry has no "library" (version 7 wrote none).
    keys = RedisBroker(redis_url).keys
    async with raw_client(redis_url) as raw:
        deadline = int(time.time() * 1000) + 60_000
        await raw.zadd(keys.nodes, {"old-node": deadline})
        old = '{"id":"old-node","seen_at":0,"workers":[],"counters":{}}'
        await raw.set(f"{keys.prefix}node:old-node", old, px=60_000)
        with trio.fail_after(20):
            refused = pytest.RaisesExc(InvalidValue, match="older trio-tasks.*old-node.*stop them")
            with pytest.RaisesGroup(refused, flatten_subgroups=True):
                async with node(recording_registry([]), redis_url, workers=1):
                    pass  # pragma: no cover - refused before it runs
        # Once the old node is gone, the new one starts, and its own entry names its version.
        await raw.delete([f"{keys.prefix}node:old-node"])
        await raw.zrem(keys.nodes, ["old-node"])
        runs: list[str] = []
        with trio.fail_after(20):
            async with node(recording_registry(runs), redis_url, workers=1) as p:
                job = await p.submit("noop")
                assert (await p.wait(job.id)).status is JobStatus.COMPLETED
                entry = await raw.get(f"{keys.prefix}node:{p.broker.node_id}")
                assert entry is not None
                assert '"library":8' in entry
        assert runs == [job.id]


class _Lines:
    """A logger that keeps its lines: ``(level, message, fields)``."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda message, **fields: self.lines.append((level, message, fields))

    def lost(self) -> list[str]:
        return [f["job_id"] for _, m, f in self.lines if m.startswith("lease lost")]


def test_a_heartbeat_that_meets_the_jobs_own_outcome_does_not_warn(redis_url: str) -> None:
    # The heartbeat's snapshot holds a lease whose outcome Redis records first; its answer
    # ("not running") comes back while the outcome's write is still under way. Nothing is lost:
    # no warning. A lease that another node took (its token changed) is still reported.
    log = _Lines()

    async def main() -> tuple[Any, list[str], list[str], str]:
        broker = RedisBroker(redis_url, lease=2.0, logger=log)
        async with running(broker):
            job, other = new_job(), new_job()
            await broker.enqueue([job, other])
            delivery = await broker.fetch("w1")
            taken = await broker.fetch("w2")
            scripts = broker._node.scripts
            finish = scripts.finish

            async def finish_then_beat(*args: Any, **kwargs: Any) -> Any:
                answer = await finish(*args, **kwargs)  # recorded by Redis
                await broker._background.beat()  # answered before the write returns
                return answer

            scripts.finish = finish_then_beat  # type: ignore[method-assign]
            recording = await broker.complete(delivery, 1)
            before = log.lost()
            async with raw_client(redis_url) as client:
                await client.hset(broker.keys.job(taken.job.id), {"tok": "999999"})
            await broker._background.beat()
            return recording, before, log.lost(), taken.job.id

    recording, before, after, taken_id = trio.run(main)
    assert recording.status is RecordStatus.RECORDED
    assert before == []
    assert after == [taken_id]
