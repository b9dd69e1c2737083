"""``redis+cluster://`` on a real 3-master Redis Cluster the tests start (``redis-server
--cluster-enabled yes``, ``redis-cli --cluster create``): every path of the broker, pub/sub
(cancel and done channels) and the wake-up list (BLPOP) across nodes, and namespaces spread
over the masters.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
import trio
from redis_exercise import exercise, exercise_tasks
from redis_server import RedisServer, command, redis_binary, skip_or_fail, start_cluster
from test_redis_broker import Host, new_job, running

import trio_tasks
from trio_tasks import BrokerUnavailable, JobStatus
from trio_tasks.brokers._redis import RedisBroker

pytestmark = [pytest.mark.slow, pytest.mark.redis]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServer]]:
    if redis_binary() is None or shutil.which("redis-cli") is None:
        skip_or_fail("redis-server or redis-cli is not installed")
    servers = start_cluster(tmp_path_factory.mktemp("cluster"), 3)
    yield servers
    for server in servers:
        server.kill()


def cluster_url(servers: list[RedisServer], namespace: str) -> str:
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in servers)
    return f"redis+cluster://{hosts}?namespace={namespace}"


def owner(servers: list[RedisServer], namespace: str) -> int:
    """The port of the master holding ``namespace`` (its one slot)."""
    slot = int(command("127.0.0.1", servers[0].port, "CLUSTER", "KEYSLOT", f"tt:{{{namespace}}}:x"))
    for start, end, master, *_ in command("127.0.0.1", servers[0].port, "CLUSTER", "SLOTS"):
        if int(start) <= slot <= int(end):
            return int(master[1])
    raise AssertionError(f"no master for slot {slot}")


def namespaces_on_distinct_masters(servers: list[RedisServer], count: int) -> list[str]:
    found: dict[int, str] = {}
    n = 0
    while len(found) < count:
        n += 1
        found.setdefault(owner(servers, f"q{n}"), f"q{n}")
    return list(found.values())


async def test_every_path_works_in_namespaces_spread_over_three_masters(
    cluster: list[RedisServer],
) -> None:
    spread = namespaces_on_distinct_masters(cluster, 3)
    async with trio.open_nursery() as nursery:
        for namespace in spread:
            nursery.start_soon(exercise, cluster_url(cluster, namespace))
    for namespace in spread:
        port = owner(cluster, namespace)
        count = command(
            "127.0.0.1",
            port,
            "EVAL",
            "return #redis.call('KEYS', ARGV[1])",
            "0",
            f"tt:{{{namespace}}}:*",
        )
        assert int(count) > 0  # the namespace's keys are on its own master


async def test_wake_ups_and_cancellations_cross_nodes_on_a_cluster(
    cluster: list[RedisServer],
) -> None:
    url = cluster_url(cluster, "wake")
    tasks = exercise_tasks()
    registry, ran, started = tasks.registry, tasks.ran, tasks.started

    worker_broker = RedisBroker(url, poll_interval=5.0, retry_cap=0.2)
    with trio.fail_after(30):
        async with (
            trio_tasks.open_processor(registry, broker=worker_broker, workers=2),
            trio_tasks.open_processor(registry, broker=url, workers=0) as producer,
        ):
            await trio.sleep(0.3)  # the worker node's feeder is blocked in BLPOP by now
            submitted = time.monotonic()
            job = await producer.submit("noop")
            assert (await producer.wait(job.id)).status is JobStatus.COMPLETED
            # Woken by the wake-up list (BLPOP), not by the 5 s poll.
            assert ran[0] - submitted < 2.0
            blocked = await producer.submit("block")
            await started.wait()
            asked = time.monotonic()
            await producer.cancel(blocked.id)  # runs on the other node: the cancel channel
            assert (await producer.wait(blocked.id)).status is JobStatus.CANCELLED
            # By pub/sub, not by the next heartbeat (lease / 3 = 5 s).
            assert time.monotonic() - asked < 2.0


async def test_min_replicas_on_a_cluster_refuses_writes_no_replica_confirms(
    cluster: list[RedisServer],
) -> None:
    broker = RedisBroker(
        cluster_url(cluster, "unconfirmed"), min_replicas=1, replica_timeout=0.05, retry_cap=0.2
    )
    async with running(broker, host=Host()):
        with pytest.raises(BrokerUnavailable, match="not confirmed by 1 replica"):
            await broker.enqueue([new_job()])
        assert broker.health() is None
