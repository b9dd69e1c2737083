"""Running one attempt of a job and classifying how it ended, as a value.

The processor decides what an attempt means (retry, fail, count, log); this module only runs the
handler under the job's cancel scope and says what happened. Whatever a handler raises, any
:class:`BaseException` included, becomes an :class:`Attempt`: only a cancellation from outside
the job's own scope (the node is stopping) and a real Ctrl-C delivered by Trio propagate.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, NamedTuple

import trio

from ._calling import HandlerCaller
from ._context import JobContext
from ._durations import format_duration
from ._errors import PermanentError, UnknownJobType
from ._job import JobError, json_problem
from ._registry import TaskRegistry, TaskSpec


class AttemptEnd(enum.Enum):
    """How an attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


_SUCCEEDED = AttemptEnd.SUCCEEDED


class Attempt(NamedTuple):
    """One attempt's end: ``result`` when it succeeded; ``error`` (and the handler's exception
    ``exc``, for :class:`~trio_tasks.Retry` and :class:`~trio_tasks.PermanentError`) otherwise;
    ``elapsed`` seconds of run time."""

    end: AttemptEnd
    elapsed: float
    result: Any = None
    error: JobError | None = None
    exc: BaseException | None = None


async def run_attempt(
    spec: TaskSpec | None,
    ctx: JobContext,
    scope: trio.CancelScope,
    registry: TaskRegistry,
    caller: HandlerCaller,
    now: Callable[[], float] = trio.current_time,
) -> Attempt:
    """Run ``spec``'s handler on ``ctx`` inside ``scope`` (whose deadline is the job's timeout)
    through ``caller`` (thread, process, middleware) and return how it ended. ``spec`` is
    ``None`` for a type this node has no handler for.

    A scope cancelled on request looks like a timeout here: the processor, which cancelled it,
    knows better and records :func:`cancelled` instead. ``now`` reads Trio's clock (the
    processor passes the clock's own method: the same time, without a lookup per call).

    Raises:
        trio.Cancelled: the node is stopping (a cancellation from outside ``scope``).
        KeyboardInterrupt: a real Ctrl-C delivered by Trio into the handler (embedded use).
    """
    started = now()
    result: Any = None
    error: BaseException | None = None
    try:
        with scope:
            if spec is None:
                # Possible with a shared broker when another node submitted a type unknown
                # here: nothing this node can do will make the job succeed.
                raise PermanentError(str(UnknownJobType(ctx.job.type, registry.names())))
            if spec.is_async and caller.direct:
                result = await spec.handler(ctx)
            else:
                result = await caller.call(spec, ctx)
            problem = json_problem(result)
            if problem is not None:
                raise PermanentError(f"result is not JSON-serialisable: {problem}")
    except BaseException as exc:
        interruption = _interruption(exc)
        if interruption is exc:
            raise
        if interruption is not None:
            # Stopping while the handler also failed: the failure no longer matters.
            raise interruption from None
        error = _single_leaf(exc)
    ended = now()
    elapsed = ended - started
    if scope.cancelled_caught:
        message = f"timed out after {format_duration(ctx.job.timeout)}"
        return Attempt(AttemptEnd.TIMED_OUT, elapsed, error=JobError(message, "TimeoutError"))
    if error is None and ended >= scope.deadline:
        # The handler returned after its deadline without letting the cancellation reach it:
        # it blocked the event loop, or swallowed trio.Cancelled. Its time was up all the same.
        message = (
            f"timed out after {format_duration(ctx.job.timeout)} (the handler returned after "
            f"{format_duration(round(elapsed, 3))} without yielding to its cancellation)"
        )
        return Attempt(AttemptEnd.TIMED_OUT, elapsed, error=JobError(message, "TimeoutError"))
    if error is not None:
        message = str(error) or type(error).__name__
        return Attempt(
            AttemptEnd.FAILED, elapsed, error=JobError(message, type(error).__name__), exc=error
        )
    return Attempt(_SUCCEEDED, elapsed, result)


def cancelled(elapsed: float) -> Attempt:
    """The attempt of a job cancelled on request while it ran."""
    return Attempt(AttemptEnd.CANCELLED, elapsed, error=JobError("cancelled", "Cancelled"))


def _single_leaf(exc: BaseException) -> BaseException:
    """The one exception inside nested groups of one (a handler's nursery raising it), so that a
    ``PermanentError`` or ``Retry`` raised by a child task means what it says."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _interruption(exc: BaseException) -> BaseException | None:
    """The part of ``exc`` that stops the worker rather than failing the attempt, or ``None``.

    A :class:`trio.Cancelled` that got out of the job's scope belongs to an outer scope: the node
    is stopping. A ``KeyboardInterrupt`` raised by Trio's own signal handler is a real Ctrl-C
    (in a program embedding the engine without a signal receiver). Any other exception, a
    ``KeyboardInterrupt`` or ``SystemExit`` raised by the handler included, fails the attempt.
    """
    if isinstance(exc, BaseExceptionGroup):
        stops, _ = exc.split(
            lambda e: not isinstance(e, BaseExceptionGroup) and _interruption(e) is not None
        )
        return stops
    if isinstance(exc, trio.Cancelled) or (
        isinstance(exc, KeyboardInterrupt) and _raised_by_trio(exc)
    ):
        return exc
    return None


def _raised_by_trio(exc: BaseException) -> bool:
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename.replace("\\", "/")
    return "/trio/_core/" in filename
