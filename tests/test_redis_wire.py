"""The lean RESP path of the Redis broker (``_redis_wire.py``) against real redis-servers: it
must answer exactly what coredis answers (values and exception classes), authenticate and select
the database as coredis does, over TCP, TLS and Unix sockets, never hand a connection with an
unread reply to the next call, recover after a server restart, and keep to its pool's cap.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import coredis
import coredis.exceptions
import pytest
import trio
import trio.testing
from coredis.parser import NotEnoughData, Parser
from redis_server import RedisServer, TlsRedisServer, command, redis_binary, skip_or_fail
from test_redis_acl_tls import tls_server  # noqa: F401  (the fixture)
from test_redis_broker import new_job, running

from trio_tasks import JobRequest, TaskRegistry
from trio_tasks._config import Config
from trio_tasks._job import Job
from trio_tasks._submission import new_job as build_job
from trio_tasks.brokers import _redis_wire as wire_module
from trio_tasks.brokers._redis import RedisBroker
from trio_tasks.brokers._redis_client import RedisClient, make_client
from trio_tasks.brokers._redis_codec import Leased
from trio_tasks.brokers._redis_commands import CoredisCommands, WireCommands
from trio_tasks.brokers._redis_keys import RedisKeys
from trio_tasks.brokers._redis_scripts import Outcome, OutcomeKind, RedisScripts
from trio_tasks.brokers._redis_wire import (
    Incomplete,
    ReplyParser,
    Wire,
    open_wire,
    parse_settings,
    settings_of,
)

pytestmark = pytest.mark.redis


def client_for(url: str, **options: Any) -> coredis.Redis[str]:
    """A coredis client configured as the broker's (``_redis_client.py``)."""
    made = make_client(
        url, client_name="wire-test", connect_timeout=2.0, stream_timeout=10.0, max_idle=30
    )
    client = made.client
    assert isinstance(client, coredis.Redis)
    return client


@asynccontextmanager
async def both(url: str) -> AsyncIterator[tuple[coredis.Redis[str], Wire]]:
    """The broker's coredis client for ``url`` and the wire built from it, both open."""
    client = client_for(url)
    wire = open_wire(client)
    async with client, wire:
        yield client, wire


def outcome(value: Any) -> Any:
    """A reply or the exception it raised, comparable (exceptions by class and text)."""
    if isinstance(value, BaseException):
        return ("raised", type(value), str(value))
    if isinstance(value, list):
        return [outcome(v) for v in value]
    if isinstance(value, dict):
        return {k: outcome(v) for k, v in value.items()}
    return (type(value), value)


async def reply_of(call: Any) -> Any:
    try:
        return outcome(await call)
    except coredis.exceptions.RedisError as exc:
        return outcome(exc)


# -- replies: exactly what coredis answers ----------------------------------------------------

#: Functions returning every shape of reply a Lua function can give (those of ``_redis.lua``:
#: nested arrays of strings, integers and nils, status and error replies; and those a RESP3
#: connection adds: maps, sets, doubles, booleans, big numbers).
SHAPES = {
    "nested": "return {'ok', {1, {'a', false, 'b'}, {}}, 3, {{{'deep'}}}}",
    "integer": "return -42",
    "big": "return 9007199254740993",
    "nil_reply": "return nil",
    "empty": "return {}",
    "text": "return 'h\\195\\169llo \\226\\130\\172 w\\195\\182rld'",
    "not_utf8": "return {'\\255\\254', 'ok'}",
    "binary": "return 'a\\r\\nb\\0c'",
    "long": "return string.rep('x', 200000)",
    "many": "local t = {} for i = 1, 5000 do t[i] = tostring(i) end return t",
    "status": "return redis.status_reply('QUEUED-ish')",
    "error": "return redis.error_reply('ERR something went wrong')",
    "wrongtype": "return redis.error_reply('WRONGTYPE Operation against a key')",
    "noperm": "return redis.error_reply('NOPERM no permissions')",
    "oom": "return redis.error_reply('OOM command not allowed')",
    "busy": "return redis.error_reply('BUSY Redis is busy running a script')",
    "nested_error": "return {1, redis.error_reply('ERR inner'), 'x'}",
    "double": "return {double = 3.25}",
    "negative_double": "return {double = -0.5}",
    "map": "return {map = {a = 1, b = {'x', 'y'}, c = {map = {d = 'e'}}}}",
    "set": "return {set = {x = true, y = true}}",
    "truth": "return true",
    "lua_error": "error('raised by Lua')",
    "hgetall3": "redis.setresp(3) redis.call('HSET', keys[1], 'f1', 'v1', 'f2', '2') "
    "return redis.call('HGETALL', keys[1])",
    "hgetall2": "redis.call('HSET', keys[1], 'f1', 'v1') return redis.call('HGETALL', keys[1])",
}
SHAPES_LIBRARY = "#!lua name=wiretest\n" + "".join(
    f"redis.register_function('wiretest_{name}', function(keys, args) {body} end)\n"
    for name, body in SHAPES.items()
)


async def test_every_reply_shape_is_what_coredis_answers(redis_server_url: str) -> None:
    async with both(redis_server_url) as (client, wire):
        await client.function_load(SHAPES_LIBRARY, replace=True)
        assert len(SHAPES) >= 20
        for name in SHAPES:
            function = f"wiretest_{name}"
            expected = await reply_of(client.fcall(function, ["{wt}h"], []))
            got = await reply_of(wire.fcall(function, ["{wt}h"], []))
            assert got == expected, name
        # What the "function not found" handling of RedisScripts._call looks for.
        missing = await reply_of(wire.fcall("wiretest_nope", [], []))
        assert missing == await reply_of(client.fcall("wiretest_nope", [], []))
        assert "function not found" in missing[2].lower()
        # Commands beside FCALL, and an error reply coredis classifies (WRONGTYPE).
        await client.set("{wt}s", "v")
        assert await reply_of(wire.execute("GET", "{wt}s")) == await reply_of(client.get("{wt}s"))
        assert await reply_of(wire.execute("HGET", "{wt}s", "f")) == await reply_of(
            client.hget("{wt}s", "f")
        )
        assert await reply_of(wire.execute("ECHO", "ünï")) == await reply_of(client.echo("ünï"))


#: Raw RESP3 replies (one or more each), as a server may send them.
RAW_REPLIES = [
    b"+OK\r\n",
    b"-ERR unknown command 'FOO'\r\n",
    b"-WRONGPASS invalid username-password pair\r\n",
    b"-NOAUTH Authentication required.\r\n",
    b"-LOADING Redis is loading the dataset in memory\r\n",
    b":-7\r\n",
    b"(3492890328409238509324850943850943825024385\r\n",
    b"$-1\r\n",
    b"$0\r\n\r\n",
    b"$4\r\nh\xc3\xa9l\r\n",
    b"$2\r\n\xff\xfe\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n_\r\n-ERR nested\r\n",
    b"%2\r\n+k\r\n*1\r\n:1\r\n*2\r\n:1\r\n:2\r\n$1\r\nv\r\n",
    b"~3\r\n:1\r\n+a\r\n*2\r\n:1\r\n:2\r\n",
    b",3.5\r\n",
    b",-inf\r\n",
    b",1e300\r\n",
    b"#t\r\n",
    b"#f\r\n",
    b"_\r\n",
    b"=15\r\ntxt:Some string\r\n",
    b"%1\r\n$1\r\nm\r\n%1\r\n$1\r\nn\r\n~1\r\n$1\r\no\r\n",
]


def coredis_parse(raw: bytes) -> list[Any]:
    """Every reply in ``raw`` as coredis' own parser makes it (``decode_responses=True``)."""
    parser = Parser()
    parser.feed(raw)
    out = []
    while not isinstance(parsed := parser.parse(decode=True, encoding="utf-8"), NotEnoughData):
        out.append(parsed[1])
    return out


def wire_parse(raw: bytes, chunk: int) -> list[Any]:
    """Every reply in ``raw``, fed ``chunk`` bytes at a time."""
    parser = ReplyParser()
    out = []
    for start in range(0, len(raw), chunk):
        parser.feed(raw[start : start + chunk])
        while True:
            try:
                out.append(parser.next())
            except Incomplete:
                break
    return out


@pytest.mark.parametrize("chunk", [1, 2, 7, 10_000])
def test_raw_replies_parse_as_coredis_parses_them_however_they_are_split(chunk: int) -> None:
    raw = b"".join(RAW_REPLIES)
    expected = coredis_parse(raw)
    assert len(expected) == len(RAW_REPLIES)
    assert outcome(wire_parse(raw, chunk)) == outcome(expected)
    # A push message (RESP3 ``>``) is not a reply: skipped.
    pushed = b">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n:5\r\n"
    assert wire_parse(pushed, chunk) == [5]


def test_a_double_nan_parses_as_nan() -> None:
    assert math.isnan(wire_parse(b",nan\r\n", 3)[0])


class Recording(RedisScripts):
    """The library's calls, each raw reply kept (or the exception it raised)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replies: list[Any] = []

    async def _fcall(self, function: str, arguments: list[str]) -> Any:
        try:
            reply = await super()._fcall(function, arguments)
        except coredis.exceptions.RedisError as exc:
            self.replies.append((function, outcome(exc)))
            raise
        self.replies.append((function, outcome(reply)))
        return reply


def job(job_id: str, payload: dict[str, Any], **options: Any) -> Job:
    registry = TaskRegistry()
    registry.register("noop", lambda ctx: None)
    request = JobRequest.build("noop", payload, job_id=job_id, **options)
    return build_job(registry, Config(), request, 1000.0)


async def library_scenario(scripts: Recording) -> None:
    """Every function of ``_redis.lua`` the broker calls, on fixed inputs."""
    await scripts.load()
    now = 1000.0
    jobs = [job("j1", {"text": "naïve ☃"}), job("j2", {}), job("j3", {}, delay=5)]
    await scripts.enqueue(100, [(j, None) for j in jobs[:2]] + [(jobs[2], now + 5)], now=now)
    await scripts.enqueue(100, [(jobs[0], None)], now=now)  # a repeat: the existing job
    leased = await scripts.fetch(now, 15_000, "node-a", ['"w1"', '"w2"'])
    tokens = [lease.token for lease in leased.taken if isinstance(lease, Leased)]
    assert len(tokens) == 2
    await scripts.heartbeat(15_000, "node-a", 30.0, '{"id":"node-a"}', [("j1", tokens[0])])
    await scripts.progress("j1", tokens[0], {"done": 0.5})
    await scripts.watch("j1")
    await scripts.watch("missing")
    await scripts.finish(
        now + 1,
        3600.0,
        100,
        [
            Outcome("j1", tokens[0], OutcomeKind.COMPLETED, '"result ✓"'),
            Outcome("j2", tokens[1], OutcomeKind.FAILED, '{"message":"boom","type":"E"}'),
            Outcome("j2", "stale-token", OutcomeKind.COMPLETED, "1"),
        ],
    )
    await scripts.cancel("j3", now + 2, 3600.0, 100)
    await scripts.cancel("j1", now + 2, 3600.0, 100)
    await scripts.cancel("missing", now + 2, 3600.0, 100)
    await scripts.retry((await scripts.get("j2")) or jobs[1], 100)
    await scripts.promote(now + 10)
    await scripts.reap(now + 100, 3600.0, 100, "lease expired")
    await scripts.counts()
    await scripts.cluster()
    await scripts.list_jobs(None, None, 10, 1000)
    await scripts.limit_figures()
    await scripts.enqueue(1, [(job("j4", {}), None)], now=now)  # full


async def test_the_librarys_replies_are_what_coredis_answers(redis_server_url: str) -> None:
    async with both(redis_server_url) as (client, wire):
        # Ours: every command over the wire (as on one server); theirs: every one through
        # coredis (as with Sentinel).
        on_wire = RedisClient("single", 2.0, WireCommands(wire), wire=wire, made=client)
        on_coredis = RedisClient("sentinel", 2.0, CoredisCommands(client), made=client)
        ours = Recording(on_wire, RedisKeys.for_namespace("wire-a"))
        theirs = Recording(on_coredis, RedisKeys.for_namespace("wire-b"))
        await library_scenario(ours)
        await library_scenario(theirs)
    assert len(ours.replies) >= 18
    assert ours.replies == theirs.replies


# -- connecting: AUTH, SELECT, TLS, Unix sockets ----------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    if redis_binary() is None:
        skip_or_fail("redis-server is not installed")
    server = RedisServer(tmp_path / "redis", extra=("--unixsocket", str(tmp_path / "r.sock")))
    server.start()
    yield server
    server.kill()


async def test_an_acl_user_authenticates_and_a_wrong_password_fails_as_with_coredis(
    server: RedisServer,
) -> None:
    rule = ["on", ">s3cret", "~*", "+@all"]
    assert command("127.0.0.1", server.port, "ACL", "SETUSER", "worker", *rule) == "OK"
    async with both(f"redis://worker:s3cret@127.0.0.1:{server.port}/0") as (_, wire):
        assert await wire.execute("ACL", "WHOAMI") == "worker"
        assert await wire.execute("CLIENT", "GETNAME") == "wire-test"
    url = f"redis://worker:wrong@127.0.0.1:{server.port}/0"
    client = client_for(url)
    async with client:
        with pytest.raises(coredis.exceptions.RedisError) as theirs:
            await client.ping()
    async with open_wire(client_for(url)) as wire:
        with pytest.raises(coredis.exceptions.RedisError) as ours:
            await wire.execute("PING")
        assert wire.open_connections == 0
    assert type(ours.value) is type(theirs.value)
    assert isinstance(ours.value, coredis.exceptions.AuthenticationError)


async def test_the_database_of_the_url_is_selected(server: RedisServer) -> None:
    async with both(f"redis://127.0.0.1:{server.port}/3") as (_, wire):
        assert await wire.execute("SET", "in-three", "yes") == "OK"
    assert command("127.0.0.1", server.port, "GET", "in-three") is None
    assert command("127.0.0.1", server.port, "SELECT", "3") == "OK"
    assert command("127.0.0.1", server.port, "DBSIZE") == 0  # a new connection: database 0
    async with both(f"redis://127.0.0.1:{server.port}/3") as (client, wire):
        assert await client.get("in-three") == "yes"
        assert await wire.execute("GET", "in-three") == "yes"
    async with both(f"redis://127.0.0.1:{server.port}/99") as (client, wire):
        with pytest.raises(coredis.exceptions.ResponseError, match="out of range"):
            await wire.execute("PING")


async def test_a_unix_socket_url(server: RedisServer, tmp_path: Path) -> None:
    async with both(f"unix://{tmp_path / 'r.sock'}?db=2") as (client, wire):
        assert await wire.execute("SET", "over-unix", "1") == "OK"
        assert await client.get("over-unix") == "1"
        assert await wire.execute("CLIENT", "GETNAME") == "wire-test"


async def test_tls_with_the_servers_ca_and_one_connection_reused(
    tls_server: TlsRedisServer,  # noqa: F811
) -> None:
    url = f"{tls_server.url}?ssl_ca_certs={tls_server.ca}&ssl_check_hostname=true"
    async with both(url) as (client, wire):
        first = await wire.execute("CLIENT", "ID")
        for i in range(5):
            assert await wire.execute("ECHO", f"over tls {i}") == f"over tls {i}"
        assert await wire.execute("CLIENT", "ID") == first  # one connection, kept
        assert await client.echo("x") == "x"
    async with both(tls_server.url) as (_, wire):  # no CA: the server cannot be verified
        with pytest.raises(coredis.exceptions.ConnectionError):
            await wire.execute("PING")


# -- connections: never poisoned, recovered, capped --------------------------------------------


async def test_a_call_cancelled_after_its_write_closes_its_connection(
    redis_server_url: str,
) -> None:
    async with both(redis_server_url) as (client, wire):
        first = await wire.execute("CLIENT", "ID")
        assert await wire.execute("CLIENT", "ID") == first  # an idle connection is reused
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wire.execute, "BLPOP", "{wt}never", "1")
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()  # the BLPOP is sent; its reply (nil, in 1s) is never read
        assert wire.open_connections == 0
        # Were the connection reused, this call would read the BLPOP's nil.
        assert await wire.execute("ECHO", "mine") == "mine"
        assert wire.open_connections == 1
        assert await client.echo("ok") == "ok"


@asynccontextmanager
async def fake_server(
    answers: list[bytes],
) -> AsyncIterator[tuple[str, list[trio.Event]]]:
    """A server on a free port that answers each command it reads with the next of
    ``answers`` (after the handshake's ``HELLO``); an answer ``b"STALL"`` is never sent. Yields
    its URL."""
    stalled: list[trio.Event] = []

    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            handshake = False
            while chunk := await stream.receive_some(65536):
                data += chunk
                while data.startswith(b"*") and data.endswith(b"\r\n"):
                    # One command a read is enough here: the wire writes each whole.
                    data = b""
                    if not handshake:
                        handshake = True
                        await stream.send_all(b"%1\r\n+proto\r\n:3\r\n")
                        continue
                    answer = answers.pop(0)
                    if answer == b"STALL":
                        event = trio.Event()
                        stalled.append(event)
                        await event.wait()
                        return
                    await stream.send_all(answer)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, serve, 0)
        port = listeners[0].socket.getsockname()[1]
        yield f"redis://127.0.0.1:{port}/0", stalled
        nursery.cancel_scope.cancel()


async def test_a_call_cancelled_mid_reply_leaves_no_half_read_reply() -> None:
    # The rest of the first reply ("…\r\n") would come in the next answer.
    answers = [b"$5\r\nfir", b"$6\r\nsecond\r\n"]
    async with fake_server(answers) as (url, _), open_wire(client_for(url)) as wire:
        with trio.move_on_after(0.2):
            await wire.execute("ECHO", "first")  # half a reply, then nothing
        assert wire.open_connections == 0
        assert await wire.execute("ECHO", "second") == "second"


async def test_garbage_from_the_server_is_a_connection_error_and_closes_it() -> None:
    answers = [b"?what\r\n", b"+fine\r\n"]
    async with fake_server(answers) as (url, _), open_wire(client_for(url)) as wire:
        with pytest.raises(coredis.exceptions.ConnectionError, match="Protocol error"):
            await wire.execute("PING")
        assert wire.open_connections == 0
        assert await wire.execute("PING") == "fine"


async def test_a_silent_server_times_out_and_the_connection_is_closed() -> None:
    async with fake_server([b"STALL"]) as (url, stalled):
        client = make_client(
            url, client_name="t", connect_timeout=2.0, stream_timeout=0.2, max_idle=30
        ).client
        assert isinstance(client, coredis.Redis)
        async with open_wire(client) as wire:
            with pytest.raises(TimeoutError):
                await wire.execute("PING")
            assert wire.open_connections == 0
        stalled[0].set()


async def test_a_server_restart_fails_calls_while_down_then_they_recover(
    own_redis: Any,
) -> None:
    async with both(own_redis.url) as (_, wire):
        assert await wire.execute("SET", "kept", "1") == "OK"
        await trio.to_thread.run_sync(own_redis.stop)
        with pytest.raises(coredis.exceptions.ConnectionError):
            await wire.execute("GET", "kept")
        assert wire.open_connections == 0
        await trio.to_thread.run_sync(own_redis.start)
        assert await wire.execute("GET", "kept") == "1"
        # An idle connection the server closed (a restart between two calls) is not used.
        await trio.to_thread.run_sync(own_redis.stop)
        await trio.to_thread.run_sync(own_redis.start)
        assert await wire.execute("GET", "kept") == "1"
        assert wire.open_connections == 1


async def test_beyond_the_pools_cap_calls_wait_for_a_connection(redis_server_url: str) -> None:
    async with both(f"{redis_server_url}?max_connections=2") as (client, wire):
        results: list[Any] = []

        async def pop(key: str) -> None:
            results.append(await wire.execute("BLPOP", key, "0"))

        async with trio.open_nursery() as nursery:
            for key in ("{wt}k1", "{wt}k2", "{wt}k3"):
                nursery.start_soon(pop, key)
            await trio.testing.wait_all_tasks_blocked()
            assert wire.open_connections == 2  # the third waits for one of them
            await client.rpush("{wt}k1", ["a"])
            await client.rpush("{wt}k2", ["b"])
            await client.rpush("{wt}k3", ["c"])
        assert sorted(map(tuple, results)) == [("{wt}k1", "a"), ("{wt}k2", "b"), ("{wt}k3", "c")]
        assert wire.open_connections == 2


# -- in the broker ------------------------------------------------------------------------------


async def test_the_broker_calls_its_functions_over_the_wire_and_closes_it(
    redis_url: str,
) -> None:
    broker = RedisBroker(redis_url, retry_cap=0.2)
    wire = broker._scripts.wire
    assert wire is not None
    async with running(broker):
        await broker.enqueue([new_job()])
        assert wire.open_connections >= 1
        clients = await wire.execute("CLIENT", "LIST")
        names = [
            line for line in clients.splitlines() if f"name=trio-tasks:{broker.node_id}" in line
        ]
        assert len(names) >= 2  # the wire's and coredis' connections carry the node's name
    assert wire.closed
    assert wire.open_connections == 0


def test_sentinel_and_cluster_urls_keep_coredis_for_everything() -> None:
    for url in ("redis+sentinel://127.0.0.1:1/mymaster", "redis+cluster://127.0.0.1:1"):
        assert RedisBroker(url)._scripts.wire is None
    assert RedisBroker("redis://127.0.0.1:1/0")._scripts.wire is not None


# -- URLs read without coredis; pub/sub ------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://localhost",
        "redis://user:p%40ss@Host.example:7000/3",
        "redis://:secret@host/2?db=5",
        "redis://host:6380?max_connections=8&stream_timeout=2.5&connect_timeout=1"
        "&max_idle_time=9&client_name=x",
        "redis://[::1]:6390/1",
        "unix:///tmp/r.sock?db=4",
        "unix:///tmp/r.sock",
    ],
)
def test_the_wire_reads_a_url_as_coredis_does(url: str) -> None:
    options = {"connect_timeout": 2.0, "stream_timeout": 10.0}
    ours = parse_settings(url, client_name="n", max_idle_time=30, **options)
    made = make_client(url, client_name="n", max_idle=30, **options)
    assert made.made is None  # coredis' client not made for it
    assert ours == settings_of(made.client)


@pytest.mark.parametrize(
    "url", ["rediss://host:6379/0", "redis://host/0?ssl_cert_reqs=none", "redis://host/0?timeout=3"]
)
def test_a_url_the_wire_does_not_read_whole_is_left_to_coredis(url: str) -> None:
    assert parse_settings(url) is None
    made = make_client(url, client_name="n", connect_timeout=2.0, stream_timeout=10.0, max_idle=30)
    assert made.made is not None
    assert made.wire is not None
    assert made.wire.settings == settings_of(made.made)


async def test_a_subscription_receives_the_messages_of_its_channels(
    redis_server_url: str,
) -> None:
    async with both(redis_server_url) as (client, wire):
        async with wire.subscribe(["wire-ch-a", "wire-ch-b"]) as messages:
            assert wire.open_connections == 1
            await client.publish("wire-ch-other", "not ours")
            assert await wire.execute("PUBLISH", "wire-ch-a", "one") == 1
            await client.publish("wire-ch-b", "two ☃\nlines")
            got = [await messages.__anext__() for _ in range(2)]
        assert got == [("wire-ch-a", "one"), ("wire-ch-b", "two ☃\nlines")]
        assert wire.open_connections == 1  # the subscription's own closed with its block


async def test_a_quiet_subscription_pings_and_stays(
    redis_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire_module, "KEEPALIVE", 0.05)
    async with (
        both(redis_server_url) as (client, wire),
        wire.subscribe(["wire-quiet"]) as messages,
    ):
        with trio.move_on_after(0.3):  # several PINGs, each answered
            await messages.__anext__()
        await client.publish("wire-quiet", "still here")
        with trio.fail_after(5):
            assert await messages.__anext__() == ("wire-quiet", "still here")


async def test_a_subscription_whose_server_falls_silent_times_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wire_module, "KEEPALIVE", 0.05)
    confirmed = b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"
    async with fake_server([confirmed, b"STALL"]) as (url, stalled):
        settings = attrs.evolve(parse_settings(url), stream_timeout=0.2)  # type: ignore[misc]
        async with Wire(settings) as wire, wire.subscribe(["c"]) as messages:
            with trio.fail_after(5), pytest.raises(TimeoutError):
                await messages.__anext__()
        stalled[0].set()
