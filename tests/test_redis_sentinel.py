"""Sentinel URLs and ``BROKER_MIN_REPLICAS``, in-process, against real servers the tests start:
a master, a replica and a Sentinel (``redis-server --sentinel``).

The end-to-end fail-over under load, with ``trio-tasks serve`` and ``worker`` processes, is in
``test_redis_sentinel_failover.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trio
from redis_server import (
    RedisServer,
    Relay,
    SentinelServer,
    command,
    info,
    redis_binary,
    replica_of,
    skip_or_fail,
    wait_for,
)
from test_redis_broker import Host, new_job, running, until

from trio_tasks import BrokerUnavailable, InvalidValue
from trio_tasks._config import Config
from trio_tasks.brokers import make_broker
from trio_tasks.brokers._base import RecordStatus
from trio_tasks.brokers._redis import RedisBroker
from trio_tasks.brokers._redis_client import make_client, parse_endpoints
from trio_tasks.brokers._redis_link import parse_redis_url

pytestmark = pytest.mark.redis


@attrs.define
class Deployment:
    """A master, its replica and (if asked for) a Sentinel watching them as ``mymaster``."""

    master: RedisServer
    replica: RedisServer | None
    sentinel: SentinelServer | None
    #: The replica's link to the master, when it goes through a relay the test can freeze.
    relay: Relay | None = None

    def sentinel_url(self, query: str = "") -> str:
        assert self.sentinel is not None
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/mymaster/0{query}"


def start_deployment(
    directory: Path, *, replica: bool, sentinel: bool, relay: bool = False
) -> Deployment:
    """Start the servers (the caller kills them: :func:`stop_deployment`); with ``relay`` the
    replica replicates through a :class:`Relay`."""
    if redis_binary() is None:
        skip_or_fail("redis-server is not installed")
    master = RedisServer(directory / "master")
    master.start()
    deployment = Deployment(master, None, None)
    try:
        if replica:
            deployment.replica = replica_of(master, directory / "replica")
            if relay:
                deployment.relay = Relay(master.port)
                deployment.replica.extra = ("--replicaof", "127.0.0.1", str(deployment.relay.port))
            deployment.replica.start()
            replica_port = deployment.replica.port
            wait_for(
                lambda: info(replica_port, "replication").get("master_link_status") == "up",
                15,
                "the replica to sync",
            )
        if sentinel:
            deployment.sentinel = SentinelServer(directory / "sentinel", master)
            deployment.sentinel.start()
            if replica:
                port = deployment.sentinel.port
                wait_for(
                    lambda: command("127.0.0.1", port, "SENTINEL", "REPLICAS", "mymaster"),
                    15,
                    "the sentinel to know the replica",
                )
    except BaseException:
        stop_deployment(deployment)
        raise
    return deployment


def stop_deployment(deployment: Deployment) -> None:
    if deployment.relay is not None:
        deployment.relay.close()
    for server in (deployment.sentinel, deployment.replica, deployment.master):
        if server is not None:
            server.kill()


@pytest.fixture
def master_only(tmp_path: Path) -> Iterator[Deployment]:
    deployment = start_deployment(tmp_path, replica=False, sentinel=False)
    yield deployment
    stop_deployment(deployment)


@pytest.fixture
def with_replica(tmp_path: Path) -> Iterator[Deployment]:
    deployment = start_deployment(tmp_path, replica=True, sentinel=False)
    yield deployment
    stop_deployment(deployment)


@pytest.fixture
def with_sentinel(tmp_path: Path) -> Iterator[Deployment]:
    deployment = start_deployment(tmp_path, replica=True, sentinel=True)
    yield deployment
    stop_deployment(deployment)


# -- URLs ------------------------------------------------------------------------------------


def test_sentinel_and_cluster_urls_name_their_servers() -> None:
    options = parse_redis_url(
        "redis+sentinel://app:s%40cret@10.0.0.1:26379,10.0.0.2:26380/prod/2?namespace=billing"
        "&lease=2s&sentinel_password=x"
    )
    assert (options.namespace, options.lease) == ("billing", 2.0)
    endpoints = parse_endpoints(options.client_url)
    assert endpoints.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    assert (endpoints.master, endpoints.db) == ("prod", 2)
    assert (endpoints.username, endpoints.password) == ("app", "s@cret")
    assert endpoints.params == {"sentinel_password": "x"}
    assert "s@cret" not in repr(endpoints)
    cluster = parse_endpoints("redis+cluster://h1:7000,h2:7001,h3:7002")
    assert cluster.hosts == (("h1", 7000), ("h2", 7001), ("h3", 7002))
    assert cluster.master is None
    for bad in (
        "redis+sentinel://h:26379",  # no master name
        "redis+sentinel://h/mymaster",  # no port
        "redis+cluster://h:7000/1",  # a cluster has db 0 only
        "redis+cluster://h:7000?sentinel_password=x",
        "redis+sentinel://h:1/m?ssl_ca_certs=/ca.pem",  # not supported there
    ):
        with pytest.raises(InvalidValue):
            make_client(bad, client_name="t", connect_timeout=1, stream_timeout=1, max_idle=30)


def test_make_broker_passes_min_replicas_and_accepts_the_new_schemes() -> None:
    config = Config(broker_url="redis+sentinel://h:26379/mymaster", broker_min_replicas=2)
    broker = make_broker(config.broker_url, config)
    assert isinstance(broker, RedisBroker)
    assert broker.min_replicas == 2
    cluster = make_broker("redis+cluster://h:7000,h:7001", Config())
    assert isinstance(cluster, RedisBroker)
    with pytest.raises(InvalidValue):
        Config(broker_url="redis+sentinel:/h")  # not a scheme a node accepts


# -- BROKER_MIN_REPLICAS ---------------------------------------------------------------------


async def test_writes_no_replica_confirms_are_refused(master_only: Deployment) -> None:
    url = f"{master_only.master.url}?namespace=unconfirmed"
    broker = RedisBroker(url, min_replicas=1, replica_timeout=0.05, retry_cap=0.2)
    async with running(broker):
        with pytest.raises(BrokerUnavailable, match="not confirmed by 1 replica"):
            await broker.enqueue([new_job()])
        assert broker.health() is None  # Redis answers: only the write is refused
        # An outcome not confirmed is not recorded (a job leased without confirmation first).
        broker._scripts.confirm_writes(0, 0.05)
        job = new_job()
        await broker.enqueue([job])
        delivery = await broker.fetch("w1")
        broker._scripts.confirm_writes(1, 0.05)
        recording = await broker.complete(delivery, "done")
        assert recording.status is RecordStatus.NOT_RECORDED


async def test_writes_a_replica_confirms_are_acknowledged(with_replica: Deployment) -> None:
    assert with_replica.replica is not None
    url = f"{with_replica.master.url}?namespace=confirmed"
    broker = RedisBroker(url, min_replicas=1, replica_timeout=2.0)
    async with running(broker):
        job = new_job()
        [admission] = await broker.enqueue([job])
        assert admission.created
        # Acknowledged means on the replica already.
        key = f"tt:{{confirmed}}:job:{job.id}"
        assert command("127.0.0.1", with_replica.replica.port, "HGET", key, "status") is not None
        delivery = await broker.fetch("w1")
        recording = await broker.complete(delivery, "done")
        assert recording.status is RecordStatus.RECORDED
        status = command("127.0.0.1", with_replica.replica.port, "HGET", key, "status")
        assert status == '"completed"'


# -- Sentinel ----------------------------------------------------------------------------------


async def test_a_node_finds_the_new_master_after_a_failover(with_sentinel: Deployment) -> None:
    sentinel = with_sentinel.sentinel
    replica = with_sentinel.replica
    assert sentinel is not None
    assert replica is not None
    url = with_sentinel.sentinel_url("?namespace=failover&lease=1s")
    broker = RedisBroker(url, min_replicas=1, replica_timeout=2.0, retry_cap=0.2)
    async with running(broker, host=Host()):
        before = new_job()
        await broker.enqueue([before])
        with_sentinel.master.kill()
        await until(lambda: broker.health() is not None, 10)
        await until(lambda: sentinel.master_address() == ("127.0.0.1", replica.port), 20)
        # The new master has no replica yet: writes are refused, reads work.
        await until(lambda: broker.health() is None, 20, step=0.1)
        found = await broker.get(before.id)
        assert found is not None
        assert found.id == before.id
        assert broker._background.reap_grace > broker._link.stable_for
        with pytest.raises(BrokerUnavailable):
            await broker.enqueue([new_job()])
        # A new replica of the new master: writes are confirmed again.
        extra = replica_of(with_sentinel.master, with_sentinel.master.directory.parent / "r2")
        extra.extra = ("--replicaof", "127.0.0.1", str(replica.port))
        extra.start()
        try:
            after = new_job()
            with trio.fail_after(20):
                while True:
                    try:
                        await broker.enqueue([after])
                        break
                    except BrokerUnavailable:
                        await trio.sleep(0.1)
            assert await broker.get(after.id) is not None
        finally:
            extra.kill()
