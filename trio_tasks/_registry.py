"""Registering job handlers by type name."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ._durations import parse_duration
from ._errors import InvalidValue, UnknownJobType

if TYPE_CHECKING:
    from ._context import JobContext

Handler = Callable[["JobContext"], Awaitable[Any]] | Callable[["JobContext"], Any]
H = TypeVar("H", bound=Callable[..., Any])


@attrs.frozen
class TaskSpec:
    """A registered job type: its handler and the per-type overrides of timeout and retries.

    ``is_async`` is true for ``async def`` handlers; plain functions run in a worker thread.
    ``timeout`` (seconds) and ``retries`` are ``None`` when the processor's defaults apply.
    """

    name: str
    handler: Handler
    is_async: bool
    timeout: float | None = None
    retries: int | None = None


@attrs.define(eq=False)
class TaskRegistry:
    """The job types a processor knows, each mapped to its handler.

    Use :meth:`task` as a decorator::

        tasks = TaskRegistry()

        @tasks.task("email", timeout="30s", retries=5)
        async def send_email(ctx): ...
    """

    _specs: dict[str, TaskSpec] = attrs.field(factory=dict, init=False)

    def task(
        self,
        name: str | None = None,
        *,
        timeout: str | float | None = None,
        retries: int | None = None,
    ) -> Callable[[H], H]:
        """Return a decorator registering the function as the handler of ``name``.

        ``name`` defaults to the function's ``__name__``. ``timeout`` accepts Go durations or
        seconds; ``retries`` is the number of retries after the first attempt.
        """

        def decorate(handler: H) -> H:
            self.register(name or handler.__name__, handler, timeout=timeout, retries=retries)
            return handler

        return decorate

    def register(
        self,
        name: str,
        handler: Handler,
        *,
        timeout: str | float | None = None,
        retries: int | None = None,
    ) -> TaskSpec:
        """Register ``handler`` for job type ``name`` and return its :class:`TaskSpec`.

        Raises:
            InvalidValue: the name is empty or taken, or timeout/retries are out of range.
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidValue(f"job type name must be a non-empty string, got {name!r}")
        if name in self._specs:
            raise InvalidValue(f"job type {name!r} is already registered")
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
        spec = TaskSpec(
            name=name,
            handler=handler,
            is_async=inspect.iscoroutinefunction(handler),
            timeout=seconds,
            retries=retries,
        )
        self._specs[name] = spec
        return spec

    def get(self, name: str) -> TaskSpec:
        """Return the spec of job type ``name``.

        Raises:
            UnknownJobType: no such type; the error lists the known ones.
        """
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownJobType(name, self._specs) from None

    def names(self) -> list[str]:
        """Return the registered job type names, sorted."""
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)
