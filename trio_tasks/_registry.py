"""Registering job handlers by type name."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ._durations import parse_duration
from ._errors import InvalidValue, UnknownJobType
from ._limits import Rate, TypeLimit, check_concurrency
from ._schedules import Schedule, build_schedule

if TYPE_CHECKING:
    from ._context import JobContext
    from ._job import Job

#: The name of the fallback handler's :class:`TaskSpec`.
FALLBACK = "(fallback)"
Handler = Callable[["JobContext"], Awaitable[Any]] | Callable[["JobContext"], Any]
H = TypeVar("H", bound=Callable[..., Any])
#: ``async def middleware(ctx, call_next) -> result``: wraps every run of a handler.
Middleware = Callable[["JobContext", Callable[[], Awaitable[Any]]], Awaitable[Any]]
#: ``def hook(job) -> None``: called for every new job before it is admitted; may add to
#: ``job.meta`` (carried with the job to the node that runs it).
SubmitHook = Callable[["Job"], None]
M = TypeVar("M", bound=Middleware)
S = TypeVar("S", bound=SubmitHook)
_ISOLATION = (None, "thread", "process")


@attrs.frozen
class TaskSpec:
    """A registered job type: its handler and the per-type overrides of timeout and retries.

    ``is_async`` is true for ``async def`` handlers; plain functions run in a worker thread,
    or in a worker process when ``isolate`` is ``"process"``. ``timeout`` (seconds) and
    ``retries`` are ``None`` when the processor's defaults apply. ``concurrency`` (jobs of
    the type running at once) and ``rate`` (starts per period) are its limits, ``None`` for
    none (see ``docs/scheduling.md``).
    """

    name: str
    handler: Handler
    is_async: bool
    timeout: float | None = None
    retries: int | None = None
    isolate: str | None = None
    concurrency: int | None = None
    rate: Rate | None = None


@attrs.define(eq=False)
class TaskRegistry:
    """The job types a processor knows, each mapped to its handler.

    Use :meth:`task` as a decorator::

        tasks = TaskRegistry()

        @tasks.task("email", timeout="30s", retries=5)
        async def send_email(ctx): ...

    A registry may also have a :meth:`fallback` handler, which runs every job of a type it
    has no handler for (as the seed's generic simulation does); without one, such a job is
    refused up front with :class:`UnknownJobType`.
    """

    _specs: dict[str, TaskSpec] = attrs.field(factory=dict, init=False)
    _fallback: TaskSpec | None = attrs.field(default=None, init=False)
    #: Middleware around every run, outermost first (in order of registration).
    middlewares: list[Middleware] = attrs.field(factory=list, init=False)
    #: Hooks called for every new job before it is admitted.
    submit_hooks: list[SubmitHook] = attrs.field(factory=list, init=False)
    #: Periodic jobs by name (see :meth:`schedule`).
    schedules: dict[str, Schedule] = attrs.field(factory=dict, init=False)

    def task(
        self,
        name: str | None = None,
        *,
        timeout: str | float | None = None,
        retries: int | None = None,
        isolate: str | None = None,
        concurrency: int | None = None,
        rate: str | None = None,
    ) -> Callable[[H], H]:
        """Return a decorator registering the function as the handler of ``name``.

        ``name`` defaults to the function's ``__name__``. ``timeout`` accepts Go durations or
        seconds; ``retries`` is the number of retries after the first attempt;
        ``isolate="process"`` runs a plain ``def`` handler in a worker process that is killed
        when the job times out or is cancelled (see ``docs/library.md``).

        ``concurrency=N`` caps how many jobs of the type run at once (across all nodes on
        Redis, per process otherwise); ``rate="100/m"`` (``"N/s"``, ``"N/m"``, ``"N/h"`` or
        ``"N/<duration>"`` such as ``"10/30s"``) caps how many start per period. A job held
        back by a limit holds no worker and delays no job of another type (see
        ``docs/scheduling.md``).

        Raises:
            InvalidValue: an option is out of range (at decoration time).
        """
        limit = _build_limit(name or "?", concurrency, rate)

        def decorate(handler: H) -> H:
            self.register(
                name or handler.__name__,
                handler,
                timeout=timeout,
                retries=retries,
                isolate=isolate,
                concurrency=limit.concurrency,
                rate=limit.rate,
            )
            return handler

        return decorate

    def middleware(self, fn: M) -> M:
        """Register ``async def fn(ctx, call_next)`` around every run of every handler.

        ``await call_next()`` runs the rest of the chain (the next middleware, then the
        handler) and returns its result or raises its exception; the middleware returns the
        result (it may replace it) or raises. Middleware run in order of registration, the
        first registered outermost, inside the job's timeout.
        """
        is_async = inspect.iscoroutinefunction(fn)
        if not is_async:
            raise InvalidValue(f"middleware must be an async def function, got {fn!r}")
        self.middlewares.append(fn)
        return fn

    def on_submit(self, fn: S) -> S:
        """Register ``def fn(job)``, called for every new job before it is admitted; it may
        add string entries to ``job.meta`` (trace context, say), which travel with the job."""
        if not callable(fn):
            raise InvalidValue(f"a submit hook must be callable, got {fn!r}")
        self.submit_hooks.append(fn)
        return fn

    def schedule(
        self,
        name: str,
        *,
        job_type: str,
        cron: str | None = None,
        every: str | float | None = None,
        payload: dict[str, Any] | None = None,
        priority: Any = "normal",
        timezone: str = "UTC",
        catch_up: bool = True,
        timeout: str | float | None = None,
        retries: int | None = None,
    ) -> Schedule:
        """Submit a job of ``job_type`` periodically and return the :class:`Schedule`.

        ``cron`` is a 5-field cron expression evaluated in ``timezone``; ``every`` a Go
        duration (``"30s"``, ``"1h"``), ticking at whole multiples of it since the Unix epoch.
        Each tick is submitted once across all the nodes sharing a broker (its job id is
        ``sched:<name>:<tick>``). After downtime the most recent missed tick runs once, unless
        ``catch_up`` is false. See ``docs/scheduling.md``.

        Raises:
            InvalidValue: the name is taken or malformed, or an option is invalid.
        """
        if name in self.schedules:
            raise InvalidValue(f"schedule {name!r} is already registered")
        spec = build_schedule(
            name,
            job_type=job_type,
            cron=cron,
            every=every,
            payload=payload,
            priority=priority,
            timezone=timezone,
            catch_up=catch_up,
            timeout=timeout,
            retries=retries,
        )
        self.schedules[name] = spec
        return spec

    def register(
        self,
        name: str,
        handler: Handler,
        *,
        timeout: str | float | None = None,
        retries: int | None = None,
        isolate: str | None = None,
        concurrency: int | None = None,
        rate: str | Rate | None = None,
    ) -> TaskSpec:
        """Register ``handler`` for job type ``name`` and return its :class:`TaskSpec`.

        Raises:
            InvalidValue: the name is empty or taken, timeout/retries are out of range,
                ``isolate`` is not ``None``, ``"thread"`` or ``"process"`` (a process needs a
                plain ``def`` handler), or a limit is malformed (see :meth:`task`).
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidValue(f"job type name must be a non-empty string, got {name!r}")
        if name in self._specs:
            raise InvalidValue(f"job type {name!r} is already registered")
        limit = _build_limit(name, concurrency, rate)
        spec = _build_spec(name, handler, timeout=timeout, retries=retries, isolate=isolate)
        if limit != _NO_LIMIT:
            spec = attrs.evolve(spec, concurrency=limit.concurrency, rate=limit.rate)
        self._specs[name] = spec
        return spec

    def limits(self) -> dict[str, TypeLimit]:
        """The limits of each registered type that has any, by type name."""
        return {
            spec.name: TypeLimit(spec.concurrency, spec.rate)
            for spec in self._specs.values()
            if spec.concurrency is not None or spec.rate is not None
        }

    def fallback(
        self,
        handler: H | None = None,
        *,
        timeout: str | float | None = None,
        retries: int | None = None,
        isolate: str | None = None,
    ) -> Any:
        """Register the handler of every job type that has none of its own.

        Use it bare (``@tasks.fallback``) or with the options of :meth:`task`
        (``@tasks.fallback(timeout="1m")``); the handler reads the type from
        ``ctx.job.type``. Returns the handler (with options only, the decorator).

        Raises:
            InvalidValue: a fallback is already registered, or an option is out of range.
        """

        def decorate(function: H) -> H:
            if self._fallback is not None:
                raise InvalidValue("a fallback handler is already registered")
            self._fallback = _build_spec(
                FALLBACK, function, timeout=timeout, retries=retries, isolate=isolate
            )
            return function

        return decorate if handler is None else decorate(handler)

    @property
    def has_fallback(self) -> bool:
        """Whether jobs of any type are accepted (a :meth:`fallback` handler is registered)."""
        return self._fallback is not None

    def get(self, name: str) -> TaskSpec:
        """Return the spec of job type ``name`` (the fallback's for a type without one).

        Raises:
            UnknownJobType: no such type and no fallback; the error lists the known ones.
        """
        spec = self._specs.get(name) or self._fallback
        if spec is None:
            raise UnknownJobType(name, self._specs)
        return spec

    def find(self, name: str) -> TaskSpec | None:
        """The spec that runs jobs of type ``name`` (the fallback's), or ``None``."""
        return self._specs.get(name) or self._fallback

    def names(self) -> list[str]:
        """Return the registered job type names, sorted."""
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


_NO_LIMIT = TypeLimit()


def _build_limit(name: str, concurrency: object, rate: object) -> TypeLimit:
    """The checked limits of job type ``name``."""
    return TypeLimit(
        check_concurrency(concurrency, name=name),
        None if rate is None else Rate.parse(rate, name=f"rate of job type {name!r}"),
    )


def _build_spec(
    name: str,
    handler: Handler,
    *,
    timeout: str | float | None,
    retries: int | None,
    isolate: str | None,
) -> TaskSpec:
    """A checked :class:`TaskSpec` (the checks of a named type and of the fallback alike)."""
    if not callable(handler):
        raise InvalidValue(f"handler for {name!r} must be callable, got {handler!r}")
    seconds = None
    if timeout is not None:
        seconds = parse_duration(timeout, name=f"timeout of job type {name!r}")
        if seconds <= 0:
            raise InvalidValue(f"timeout of job type {name!r} must be > 0, got {timeout!r}")
    if retries is not None and (
        not isinstance(retries, int) or isinstance(retries, bool) or retries < 0
    ):
        raise InvalidValue(f"retries of job type {name!r} must be an int >= 0, got {retries!r}")
    is_async = inspect.iscoroutinefunction(handler)
    if isolate not in _ISOLATION:
        raise InvalidValue(
            f"isolate of job type {name!r} must be 'thread' or 'process', got {isolate!r}"
        )
    if isolate is not None and is_async:
        raise InvalidValue(
            f"isolate={isolate!r} of job type {name!r} needs a plain def handler, "
            "not an async def one"
        )
    spec = TaskSpec(
        name=name,
        handler=handler,
        is_async=is_async,
        timeout=seconds,
        retries=retries,
        isolate=isolate,
    )
    return spec
