"""Calling a handler the way its job type asks: directly (``async def``), in a thread (plain
``def``), or in a process (``isolate="process"``), inside the registry's middleware.

Middleware are ``async def fn(ctx, call_next)``; ``await call_next()`` runs the rest of the chain
and returns the handler's result or raises its exception. A middleware may replace the result or
suppress the exception, but not silently: either is logged (a warning for a suppressed
exception, info for a replaced result), so a tracing or metrics layer cannot hide a failure by
mistake.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from ._context import JobContext
from ._isolation import ProcessRunner
from ._registry import Middleware, TaskSpec
from ._threads import ThreadRunner

_UNSET: Any = object()


class HandlerCaller:
    """Calls handlers for one processor: its thread runner, its process runner (``None`` until
    a process-isolated type runs), and the registry's middleware."""

    def __init__(
        self,
        threads: ThreadRunner,
        middlewares: list[Middleware],
        log: Any,
    ) -> None:
        self.threads = threads
        self.processes: ProcessRunner | None = None
        self._middlewares = middlewares
        self._log = log

    @property
    def direct(self) -> bool:
        """Whether an ``async def`` handler is simply awaited (no middleware registered)."""
        return not self._middlewares

    async def call(self, spec: TaskSpec, ctx: JobContext) -> Any:
        """Run ``spec``'s handler on ``ctx`` through the middleware; return its result."""
        if not self._middlewares:
            return await self._call_handler(spec, ctx)
        call_next: Callable[[], Awaitable[Any]] = partial(self._call_handler, spec, ctx)
        for middleware in reversed(self._middlewares):
            call_next = partial(self._wrap, middleware, ctx, call_next)
        return await call_next()

    async def _call_handler(self, spec: TaskSpec, ctx: JobContext) -> Any:
        if spec.is_async:
            return await spec.handler(ctx)
        if spec.isolate == "process":
            if self.processes is None:
                raise RuntimeError("process-isolated handlers need the processor's process pool")
            return await self.processes.run(spec.handler, ctx)  # type: ignore[arg-type]
        return await self.threads.run(spec.handler, ctx)

    async def _wrap(
        self,
        middleware: Middleware,
        ctx: JobContext,
        call_next: Callable[[], Awaitable[Any]],
    ) -> Any:
        inner_result: Any = _UNSET
        inner_error: BaseException | None = None

        async def observed() -> Any:
            nonlocal inner_result, inner_error
            try:
                inner_result = await call_next()
            except BaseException as exc:
                inner_error = exc
                raise
            return inner_result

        result = await middleware(ctx, observed)
        name = getattr(middleware, "__qualname__", repr(middleware))
        if inner_error is not None:
            self._log.warning(
                "middleware suppressed the handler's exception",
                middleware=name,
                job_id=ctx.job.id,
                error_type=type(inner_error).__name__,
            )
        elif inner_result is not _UNSET and result is not inner_result:
            self._log.info("middleware replaced the handler's result", middleware=name)
        return result
