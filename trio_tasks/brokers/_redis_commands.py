"""The broker's commands besides ``FCALL``, on the connection each kind of deployment uses.

The broker sends a handful of plain commands (loading the Lua library, the wake-up ``BLPOP``,
reading records and counters, the periodic jobs' hash, the events gate's sorted set, pub/sub).
:class:`Commands` names them once; two classes carry them:

- :class:`WireCommands`, on one server: over the lean RESP3 client (``_redis_wire.py``),
  pub/sub included (push messages on a connection of its own). Nothing of coredis is imported
  on this path (except its exception classes, when an error happens), so a worker starts
  without it;
- :class:`CoredisCommands`, for Sentinel and Cluster: coredis' client, as before.

Both answer the same values (RESP3, text decoded) and raise coredis' exception classes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from ._redis_codec import num
from ._redis_wire import Wire

if TYPE_CHECKING:
    import coredis

#: What a subscription yields: ``(channel, data)`` of each message.
Messages = AsyncIterator[tuple[str, Any]]


class Commands(Protocol):
    """The plain commands of the broker (see the module docstring)."""

    async def function_load(self, code: str) -> None:
        """``FUNCTION LOAD REPLACE code``."""

    async def hmget(self, key: str, fields: Sequence[str]) -> list[Any]:
        """The values of ``fields`` (``None`` for each missing one)."""

    async def hget(self, key: str, field: str) -> Any:
        """The value of ``field``, or ``None``."""

    async def hset(self, key: str, mapping: Mapping[str, str]) -> None:
        """Set the fields of ``mapping``."""

    async def hgetall(self, key: str) -> dict[Any, Any]:
        """Every field and value of the hash."""

    async def type(self, key: str) -> str:
        """The type of ``key`` (``none`` when missing)."""

    async def blpop(self, key: str, timeout: float) -> Any:
        """Take the head of list ``key``, waiting up to ``timeout`` seconds for one."""

    async def zadd(self, key: str, member: str, score: float) -> None:
        """Add (or move) ``member`` with ``score``."""

    async def zrem(self, key: str, member: str) -> None:
        """Remove ``member``."""

    async def pexpire(self, key: str, ms: int) -> None:
        """Expire ``key`` in ``ms`` milliseconds."""

    async def zrange_from(self, key: str, low: float, count: int) -> list[Any]:
        """Up to ``count`` members scored ``low`` or more, lowest first."""

    async def publish_many(self, channel: str, messages: Sequence[bytes]) -> None:
        """``PUBLISH`` each message on ``channel``, in order."""

    def subscribe(self, channels: Sequence[str]) -> AbstractAsyncContextManager[Messages]:
        """Subscribed to ``channels`` for the block (confirmed on entry), the messages."""


class WireCommands:
    """:class:`Commands` over the :class:`~._redis_wire.Wire` of one server."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire

    async def function_load(self, code: str) -> None:
        """See :class:`Commands`."""
        await self.wire.execute(b"FUNCTION", b"LOAD", b"REPLACE", code)

    async def hmget(self, key: str, fields: Sequence[str]) -> list[Any]:
        """See :class:`Commands`."""
        return list(await self.wire.execute(b"HMGET", key, *fields))

    async def hget(self, key: str, field: str) -> Any:
        """See :class:`Commands`."""
        return await self.wire.execute(b"HGET", key, field)

    async def hset(self, key: str, mapping: Mapping[str, str]) -> None:
        """See :class:`Commands`."""
        await self.wire.execute(b"HSET", key, *[part for pair in mapping.items() for part in pair])

    async def hgetall(self, key: str) -> dict[Any, Any]:
        """See :class:`Commands`."""
        return dict(await self.wire.execute(b"HGETALL", key))

    async def type(self, key: str) -> str:
        """See :class:`Commands`."""
        return str(await self.wire.execute(b"TYPE", key))

    async def blpop(self, key: str, timeout: float) -> Any:
        """See :class:`Commands`."""
        return await self.wire.execute(b"BLPOP", key, num(timeout))

    async def zadd(self, key: str, member: str, score: float) -> None:
        """See :class:`Commands`."""
        await self.wire.execute(b"ZADD", key, num(score), member)

    async def zrem(self, key: str, member: str) -> None:
        """See :class:`Commands`."""
        await self.wire.execute(b"ZREM", key, member)

    async def pexpire(self, key: str, ms: int) -> None:
        """See :class:`Commands`."""
        await self.wire.execute(b"PEXPIRE", key, ms)

    async def zrange_from(self, key: str, low: float, count: int) -> list[Any]:
        """See :class:`Commands`."""
        return list(
            await self.wire.execute(
                b"ZRANGE", key, num(low), b"+inf", b"BYSCORE", b"LIMIT", 0, count
            )
        )

    async def publish_many(self, channel: str, messages: Sequence[bytes]) -> None:
        """See :class:`Commands` (one write, one round trip)."""
        replies = await self.wire.execute_many([(b"PUBLISH", channel, m) for m in messages])
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

    @asynccontextmanager
    async def subscribe(self, channels: Sequence[str]) -> AsyncIterator[Messages]:
        """See :class:`Commands`: RESP3 push messages on a connection of its own."""
        async with self.wire.subscribe(channels) as subscription:
            yield subscription


class CoredisCommands:
    """:class:`Commands` over a coredis client (Sentinel, Cluster)."""

    def __init__(self, client: coredis.Redis[str] | coredis.RedisCluster[str]) -> None:
        self.client = client

    async def function_load(self, code: str) -> None:
        """See :class:`Commands`."""
        await self.client.function_load(code, replace=True)

    async def hmget(self, key: str, fields: Sequence[str]) -> list[Any]:
        """See :class:`Commands`."""
        return list(await self.client.hmget(key, fields))

    async def hget(self, key: str, field: str) -> Any:
        """See :class:`Commands`."""
        return await self.client.hget(key, field)

    async def hset(self, key: str, mapping: Mapping[str, str]) -> None:
        """See :class:`Commands`."""
        await self.client.hset(key, dict(mapping))

    async def hgetall(self, key: str) -> dict[Any, Any]:
        """See :class:`Commands`."""
        return dict(await self.client.hgetall(key))

    async def type(self, key: str) -> str:
        """See :class:`Commands`."""
        return str(await self.client.type(key))

    async def blpop(self, key: str, timeout: float) -> Any:
        """See :class:`Commands`."""
        return await self.client.blpop([key], timeout=timeout)

    async def zadd(self, key: str, member: str, score: float) -> None:
        """See :class:`Commands`."""
        await self.client.zadd(key, {member: score})

    async def zrem(self, key: str, member: str) -> None:
        """See :class:`Commands`."""
        await self.client.zrem(key, [member])

    async def pexpire(self, key: str, ms: int) -> None:
        """See :class:`Commands`."""
        await self.client.pexpire(key, ms)

    async def zrange_from(self, key: str, low: float, count: int) -> list[Any]:
        """See :class:`Commands`."""
        from coredis.tokens import PureToken

        found = await self.client.zrange(
            key, low, "+inf", sortby=PureToken.BYSCORE, offset=0, count=count
        )
        return list(found)

    async def publish_many(self, channel: str, messages: Sequence[bytes]) -> None:
        """See :class:`Commands`: a pipeline on one server; one by one on a cluster (which
        routes a pipeline by key, and ``PUBLISH`` has none)."""
        import coredis

        client = self.client
        if len(messages) == 1 or not isinstance(client, coredis.Redis):
            for message in messages:
                await client.publish(channel, message)
            return
        async with client.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.publish(channel, message)

    @asynccontextmanager
    async def subscribe(self, channels: Sequence[str]) -> AsyncIterator[Messages]:
        """See :class:`Commands`: coredis' pub/sub, which the broker retries itself."""
        from coredis.retry import NoRetryPolicy

        async with self.client.pubsub(
            channels=channels, ignore_subscribe_messages=True, retry_policy=NoRetryPolicy()
        ) as pubsub:
            yield _messages(pubsub)


async def _messages(pubsub: Any) -> Messages:
    async for message in pubsub:
        if message["type"] == "message":
            yield str(message["channel"]), message["data"]
