"""ACL users and TLS against real servers the tests start: a node through every path of the
broker as an ACL user limited to its namespace (``docs/redis.md`` documents the rule, the same
as :data:`ACL_RULE`), and over ``rediss://`` with a CA the test makes (trustme).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import coredis
import coredis.exceptions
import pytest
import trio
from redis_exercise import exercise
from redis_server import RedisServer, TlsRedisServer, command, redis_binary, skip_or_fail
from test_redis_broker import Host, new_job, running, until

from trio_tasks.brokers._redis import RedisBroker

pytestmark = pytest.mark.redis

#: The ACL rule of ``docs/redis.md`` for the namespace ``billing``, word for word.
ACL_RULE = """
on >{password} resetkeys ~tt:{{billing}}:* resetchannels &tt:{{billing}}:* -@all
+hello +client|setname +select +ping
+fcall +function|load +wait +blpop +subscribe +unsubscribe +punsubscribe
+get +set +incr +del +exists +type +rename +copy +pexpire +time
+hget +hmget +hgetall +hset +hdel +hexists +hincrby +hkeys
+lpush +rpush +lpop +lrem +llen +ltrim +lindex
+zadd +zrem +zcard +zcount +zscore +zrange +zrevrange +zrangebyscore +zremrangebyscore
+zpopmin +persist
+publish
"""


def acl_log(port: int) -> list[dict[str, Any]]:
    """The server's ``ACL LOG``: every denied command, key or channel."""
    return [
        dict(zip(e[::2], e[1::2], strict=True)) for e in command("127.0.0.1", port, "ACL", "LOG")
    ]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    if redis_binary() is None:
        skip_or_fail("redis-server is not installed")
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


async def test_an_acl_user_limited_to_its_namespace_runs_every_path(server: RedisServer) -> None:
    rule = ACL_RULE.format(password="s3cret").split()
    assert command("127.0.0.1", server.port, "ACL", "SETUSER", "tt-billing", *rule) == "OK"
    url = f"redis://tt-billing:s3cret@127.0.0.1:{server.port}/0?namespace=billing"
    await exercise(url)
    assert acl_log(server.port) == []  # nothing was denied: the rule is complete
    # …and it is a limit: the user reaches nothing outside its namespace.
    async with coredis.Redis.from_url(url.split("?")[0], decode_responses=True) as client:
        with pytest.raises(coredis.exceptions.AuthorizationError):
            await client.set("tt:{other}:seq", "1")
        with pytest.raises(coredis.exceptions.AuthorizationError):
            await client.flushall()
    other = RedisBroker(
        f"redis://tt-billing:s3cret@127.0.0.1:{server.port}/0?namespace=other", retry_cap=0.2
    )
    async with running(other, host=Host()):
        with pytest.raises(coredis.exceptions.AuthorizationError):
            await other.enqueue([new_job()])


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsRedisServer]:
    if redis_binary() is None:
        skip_or_fail("redis-server is not installed")
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = tmp_path / "tls"
    files.mkdir()
    ca.cert_pem.write_to_path(str(files / "ca.pem"))
    cert.private_key_pem.write_to_path(str(files / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(files / "server.pem"))
    server = TlsRedisServer(
        tmp_path / "redis", cert=files / "server.pem", key=files / "server.key", ca=files / "ca.pem"
    )
    try:
        server.start()
    except RuntimeError as exc:
        skip_or_fail(f"redis-server without TLS: {exc}")
    yield server
    server.kill()


async def test_rediss_with_the_servers_ca_runs_every_path(tls_server: TlsRedisServer) -> None:
    ca = tls_server.ca
    await exercise(f"{tls_server.url}?ssl_ca_certs={ca}&ssl_check_hostname=true&namespace=tls")


async def test_rediss_refuses_a_server_it_cannot_verify(tls_server: TlsRedisServer) -> None:
    broker = RedisBroker(f"{tls_server.url}?namespace=tls", retry_cap=0.2)  # no CA given
    async with running(broker, host=Host()):
        await until(lambda: broker.health() is not None, 10)
        assert str(broker.health()).startswith("redis unreachable")
        await trio.sleep(0.5)
        assert broker.health() is not None  # it keeps trying, and keeps failing
