"""The Redis broker's view of its connection: URL options, health, and retrying with backoff.

coredis reconnects by itself on the next command; what this module adds is the node's memory
of whether Redis answers (``/health`` reports it), how long it has answered without a break
(the reaper waits for that, see :attr:`RedisLink.stable_for`), and capped exponential backoff
for the loops that must keep trying.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import trio

from .._durations import parse_duration
from .._errors import BrokerUnavailable, InvalidValue
from ._redis_errors import is_error
from ._redis_keys import valid_namespace

T = TypeVar("T")

#: coredis' errors that mean "Redis did not answer": retrying may help. (``BusyLoadingError``,
#: a server still loading its data, is a ``ConnectionError``.) Then no master known to the
#: Sentinels yet, or the one they named is a replica by now (a fail-over in progress); a
#: cluster without a master for a slot, or resharding. By name: coredis is imported only
#: once something uses it (``_redis_errors.py``).
TRANSIENT = (
    "ConnectionError",
    "SentinelError",
    "ClusterDownError",
    "TryAgainError",
    "ClusterError",
)
#: anyio's errors of a connection closed under a call (coredis runs on anyio).
_ANYIO_TRANSIENT = ("ClosedResourceError", "BrokenResourceError", "EndOfStream")
#: Error replies of a server that cannot serve writes for now (out of memory, a replica after
#: a fail-over, a failed disk, still loading, a long script): retrying may help too.
_TRANSIENT_REPLIES = ("OOM", "READONLY", "MISCONF", "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or every error of an exception group) is a lost connection or a
    server that cannot serve for now."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_transient(inner) for inner in exc.exceptions)
    if isinstance(exc, TimeoutError | OSError):
        return True
    if is_error(exc, *TRANSIENT):
        return True
    anyio = sys.modules.get("anyio")  # never imported: none of its errors can be raised
    if anyio is not None and isinstance(exc, tuple(getattr(anyio, n) for n in _ANYIO_TRANSIENT)):
        return True
    if is_error(exc, "AuthenticationError"):
        # The credentials were refused (a password rotated on the server): unavailable until
        # they match again, as for any outage. At start-up it stops the node instead (see
        # RedisLink.refused).
        return True
    if is_error(exc, "ResponseError"):
        return str(exc).startswith(_TRANSIENT_REPLIES)
    return False


def cancelled_part(exc: BaseException) -> BaseException | None:
    """If ``exc`` is a group of :class:`trio.Cancelled` and transient errors (a connection
    failing while its task is being cancelled), its cancellations alone; else ``None``."""
    if not isinstance(exc, BaseExceptionGroup):
        return None
    cancelled, rest = exc.split(trio.Cancelled)
    if cancelled is None or (rest is not None and not is_transient(rest)):
        return None
    return cancelled


@attrs.frozen
class RedisOptions:
    """What a broker URL says beyond coredis' own options."""

    client_url: str
    namespace: str | None
    lease: float | None


def parse_redis_url(url: str) -> RedisOptions:
    """Split our query parameters (``namespace``, ``lease``) off a broker URL.

    The rest (scheme, password, hosts, db and the client's own parameters) is left for
    :func:`._redis_client.make_client`.

    Raises:
        InvalidValue: an unsupported scheme, a bad namespace or lease.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster"):
        raise InvalidValue(
            f"broker URL {url!r}: expected redis://, rediss://, unix://, redis+sentinel:// "
            "or redis+cluster://"
        )
    kept: list[tuple[str, str]] = []
    namespace: str | None = None
    lease: float | None = None
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "namespace":
            if not valid_namespace(value):
                raise InvalidValue(
                    f"broker URL namespace {value!r}: expected 1-64 letters, digits or _.-"
                )
            namespace = value
        elif name == "lease":
            lease = parse_duration(value, name="broker URL lease")
            if lease < 0.1:
                raise InvalidValue(f"broker URL lease {value!r}: expected a duration >= 100ms")
        else:
            kept.append((name, value))
    client_url = urlunsplit(parts._replace(query=urlencode(kept)))
    return RedisOptions(client_url, namespace, lease)


class RedisLink:
    """Whether Redis answers, as the calls of one node see it.

    Every call reports its outcome with :meth:`failed` or :meth:`succeeded`; the first failure
    after a success makes :attr:`reason` say why (``GET /health`` turns 503), the first success
    after failures clears it.
    """

    def __init__(self, log: Any, *, retry_cap: float = 2.0, retry_base: float = 0.05) -> None:
        self._log = log
        self.retry_cap = retry_cap
        self.retry_base = retry_base
        #: ``None`` while Redis answers; otherwise why not.
        self.reason: str | None = None
        #: Whether the last failure was Redis refusing the credentials (a wrong password).
        self.refused = False
        self._up_since: float | None = None
        self._failures = 0
        self.closed = False
        self._reported: set[str] = set()

    def failed(self, exc: BaseException) -> None:
        """Record a failed call (a transient error)."""
        self._failures += 1
        first = self.reason is None
        self.refused = is_error(exc, "AuthenticationError")
        self.reason = f"redis unreachable: {_describe(exc)}"
        self._up_since = None
        if first:
            self._log.warning("redis connection lost", error=self.reason)

    def succeeded(self) -> None:
        """Record a call that got its answer."""
        if self._up_since is None:
            self._up_since = trio.current_time()
        if self.reason is not None:
            self._log.warning("redis connection restored", after_failures=self._failures)
            self.reason = None
        self._failures = 0

    def task_failed(self, task: str, exc: Exception) -> float:
        """A background task's step failed: a transient error is recorded as by
        :meth:`failed`; any other is logged (once per distinct error: a task that keeps failing
        the same way does not flood the log). Returns the pause before the task goes on."""
        if is_transient(exc):
            self.failed(exc)
            return self.backoff()
        key = f"{task}: {type(exc).__name__}: {exc}"
        if key not in self._reported:
            if len(self._reported) >= 256:
                self._reported.clear()
            self._reported.add(key)
            self._log.error(
                "redis broker task failed; it goes on", task=task, error=key, exc_info=exc
            )
        return self.retry_cap

    @property
    def stable_for(self) -> float:
        """Seconds since Redis last started answering this node (0 while it does not)."""
        if self._up_since is None or self.reason is not None:
            return 0.0
        return trio.current_time() - self._up_since

    def backoff(self) -> float:
        """The pause before the next try: exponential in the failures so far, capped, jittered."""
        exponent = min(self._failures, 16)
        cap = min(self.retry_cap, self.retry_base * (2**exponent))
        return random.uniform(cap / 2, cap)

    async def once(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` once; a transient error becomes :class:`BrokerUnavailable`."""
        # retry() with no budget, without its loop and clock: every submission comes here.
        if self.closed:
            raise BrokerUnavailable("the Redis broker is not running")
        try:
            result = await call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.failed(exc)
            raise BrokerUnavailable(self.reason or "redis unreachable") from None
        if self._up_since is None or self.reason is not None:
            self.succeeded()  # else nothing to record: it answered before, too
        return result

    async def retry(self, call: Callable[[], Awaitable[T]], *, budget: float | None = None) -> T:
        """Run ``call`` until it gets an answer, pausing with backoff after transient errors.

        Raises:
            BrokerUnavailable: ``budget`` seconds passed without an answer, or the broker
                stopped.
        """
        deadline = float("inf") if budget is None else trio.current_time() + budget
        while True:
            if self.closed:
                raise BrokerUnavailable("the Redis broker is not running")
            try:
                result = await call()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.failed(exc)
                now = trio.current_time()
                if now >= deadline:
                    raise BrokerUnavailable(self.reason or "redis unreachable") from None
                # The last try is made at the deadline, not skipped because the next pause
                # would end after it: Redis answering again within the budget gets the call
                # through (an outcome given up too early runs its job again).
                await trio.sleep(min(self.backoff(), deadline - now))
                continue
            self.succeeded()
            return result


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    return str(exc) or type(exc).__name__
