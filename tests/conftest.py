"""Shared fixtures."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
import trio.testing

import trio_tasks

# Tests read log lines only where they ask for them; keep the rest quiet and cheap.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))


# -- Engine behaviour fixtures (tests/test_behaviour.py) ------------------------------------
#
# The behavioural rules of the engine are written once against ``make_processor`` and run on
# every broker listed in ``broker_url``. On the memory broker they run under a
# ``MockClock(autojump_threshold=0)`` (``behaviour_clock``), so a hang fails in virtual seconds;
# on SQLite (its journal commits from a thread, which an autojump clock would race) and on a
# networked broker they run on the real clock, which is why those tests sequence with events and
# ``processor.wait`` instead of waiting for virtual time to jump.

MakeProcessor = Callable[..., AbstractAsyncContextManager[trio_tasks.Processor]]


@pytest.fixture(params=["memory://", "sqlite://", "redis://"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """The broker the behavioural tests run against (a URL for ``open_processor(broker=...)``)."""
    if request.param == "redis://":
        # A real redis-server and a namespace of this test's own (the Redis section below).
        return str(request.getfixturevalue("redis_url"))
    if request.param == "sqlite://":
        # A journal file of this test's own.
        tmp_path: Path = request.getfixturevalue("tmp_path")
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return str(request.param)


@pytest.fixture
def behaviour_clock(broker_url: str) -> trio.testing.MockClock | None:
    """An autojump ``MockClock`` for the memory broker, ``None`` (the real clock) otherwise.

    pytest-trio runs a test under a clock only when the test itself takes the fixture, so every
    behavioural test takes ``behaviour_clock``; ``make_processor`` checks that it did.
    """
    if broker_url.startswith("memory://"):
        return trio.testing.MockClock(autojump_threshold=0)
    return None


@pytest.fixture
def make_processor(broker_url: str) -> MakeProcessor:
    """``async with make_processor(registry, **settings) as processor:`` on ``broker_url``."""

    @asynccontextmanager
    async def make(
        registry: trio_tasks.TaskRegistry, **settings: Any
    ) -> AsyncIterator[trio_tasks.Processor]:
        if broker_url.startswith("memory://"):
            clock = trio.lowlevel.current_clock()
            assert isinstance(clock, trio.testing.MockClock), (
                "a behavioural test on the memory broker must take the behaviour_clock fixture"
            )
        async with trio_tasks.open_processor(registry, broker=broker_url, **settings) as processor:
            yield processor

    return make


# -- Redis (tests/redis_server.py) -----------------------------------------------------------
#
# A real redis-server: one per session on a free port (or TRIO_TASKS_TEST_REDIS_URL), and each
# test in a namespace of its own, so no flushing is needed. Tests that stop and restart Redis
# take ``own_redis``, a server of their own with an append-only file. Without a redis-server
# these tests skip, unless TRIO_TASKS_REQUIRE_REDIS=1 (``.ci/run``) makes that a failure.


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://127.0.0.1:<port>/0`` of the session's Redis server."""
    from redis_server import EXTERNAL_URL, RedisServer, redis_binary, skip_or_fail

    if EXTERNAL_URL:
        yield EXTERNAL_URL
        return
    if redis_binary() is None:
        skip_or_fail("redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except RuntimeError as exc:
        skip_or_fail(f"cannot start redis-server: {exc}")
    try:
        yield server.url
    finally:
        server.kill()


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """A broker URL on the session's server, in a namespace no other test uses."""
    separator = "&" if "?" in redis_server_url else "?"
    return f"{redis_server_url}{separator}namespace=t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    """A ``RedisServer`` of this test's own (append-only file on), for tests that stop it."""
    from redis_server import RedisServer, redis_binary, skip_or_fail

    if redis_binary() is None:
        skip_or_fail("redis-server is not installed")
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.kill()
