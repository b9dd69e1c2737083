"""Handlers isolated in worker processes (``@registry.task(..., isolate="process")``).

A plain ``def`` handler marked so runs in a process of a pool that trio-parallel keeps
(``PROCESS_WORKERS`` at once, default: the number of cores). Unlike a thread, a process can be
stopped: when the job times out or is cancelled, its process is killed and the pool starts
another. What crosses between the node and the process is JSON (the job's id, type, payload,
attempt and worker there; the result back), and the handler itself by reference, so it must be
a module-level function. Anything that cannot cross is a failed attempt with a clear error:
a handler defined inside a function, a result that is not JSON, an exception that cannot be
pickled (it arrives as its type name and message), a process that died (``os._exit``, a
crash).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from ._context import JobContext

if TYPE_CHECKING:
    import trio_parallel  # type: ignore[import-untyped]
from ._errors import PermanentError, TrioTasksError

#: Seconds the pool waits at shutdown for idle processes to exit before killing them.
_GRACE = 5.0
#: Builtin ``BaseException`` subclasses a handler may raise in its process: they cross as
#: their name and message and are raised again here, as the same type.
_BASE_EXCEPTIONS: dict[str, type[BaseException]] = {
    cls.__name__: cls for cls in (KeyboardInterrupt, SystemExit, GeneratorExit, BaseException)
}


class ProcessContext:
    """What an isolated handler receives, in its process: the job's ``job_id``, ``job_type``,
    ``priority``, ``payload``, ``attempt`` and ``worker_id``, and ``log``, a standard-library
    logger (``trio_tasks.job``) that adds the job's id and type to each message.

    Progress cannot be reported from a process (``set_progress`` raises).
    """

    __slots__ = ("attempt", "job_id", "job_type", "log", "payload", "priority", "worker_id")

    def __init__(self, job: dict[str, Any]) -> None:
        self.job_id: str = job["id"]
        self.job_type: str = job["type"]
        self.priority: str = job["priority"]
        self.payload: dict[str, Any] = job["payload"]
        self.attempt: int = job["attempt"]
        self.worker_id: str = job["worker_id"]
        self.log = logging.LoggerAdapter(
            logging.getLogger("trio_tasks.job"),
            {"job_id": self.job_id, "job_type": self.job_type},
        )

    async def set_progress(self, value: Any) -> None:
        """Not available in a process: raises :class:`RuntimeError`."""
        raise RuntimeError("set_progress is not available in a handler isolated in a process")


class _Crossed(Exception):
    """An exception of the handler that could not be pickled, as its type name and message."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(type_name, message)
        self.type_name = type_name
        self.message = message


def _run_in_process(handler: Callable[[ProcessContext], Any], job_json: str) -> str:
    """The function the pool runs in a worker process."""
    ctx = ProcessContext(json.loads(job_json))
    try:
        result = handler(ctx)
    except BaseException as exc:
        raise _crossable(exc) from None
    try:
        return json.dumps(result, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PermanentError(f"result is not JSON-serialisable: {exc}") from None


def _crossable(exc: BaseException) -> Exception:
    # A BaseException would end the worker process itself; anything unpicklable would break
    # the pool. Exceptions that pickle cross as they are.
    if isinstance(exc, Exception):
        try:
            pickle.dumps(exc)
        except Exception:
            return _Crossed(type(exc).__name__, str(exc))
        return exc
    return _Crossed(type(exc).__name__, str(exc))


class ProcessRunner:
    """Runs process-isolated handlers on a pool of processes, as many at once as ``limiter``
    allows; ``nursery`` holds the background starts of replacement processes."""

    def __init__(
        self,
        context: trio_parallel.WorkerContext,
        limiter: trio.CapacityLimiter,
        nursery: trio.Nursery,
    ) -> None:
        self._context = context
        self._nursery = nursery
        self.limiter = limiter
        self._crossable: dict[Callable[..., Any], str | None] = {}

    def _cannot_cross(self, handler: Callable[..., Any]) -> str | None:
        if handler not in self._crossable:
            try:
                pickle.dumps(handler)
            except Exception as exc:
                self._crossable[handler] = (
                    f"the handler cannot be sent to a process ({type(exc).__name__}: {exc}); "
                    "isolate='process' needs a module-level function"
                )
            else:
                self._crossable[handler] = None
        return self._crossable[handler]

    async def run(self, handler: Callable[[ProcessContext], Any], ctx: JobContext) -> Any:
        """Run ``handler`` in a process of the pool and return its (JSON) result.

        Cancellation kills the process at once (the pool replaces it).

        Raises:
            PermanentError: the handler or its result cannot cross.
            trio_parallel.BrokenWorkerError: the process died.
        """
        problem = self._cannot_cross(handler)
        if problem is not None:
            await trio.lowlevel.checkpoint()
            raise PermanentError(problem)
        job = ctx.job
        job_json = json.dumps(
            {
                "id": job.id,
                "type": job.type,
                "priority": str(job.priority),
                "payload": job.payload,
                "attempt": ctx.attempt,
                "worker_id": ctx.worker_id,
            }
        )
        try:
            text = await self._context.run_sync(
                _run_in_process, handler, job_json, kill_on_cancel=True, limiter=self.limiter
            )
        except _Crossed as crossed:
            raise _rebuilt(crossed) from None
        except _broken_worker_error() as exc:
            self._replace()
            raise ProcessDied(f"the handler's process died: {exc}") from None
        except trio.Cancelled:
            self._replace()  # the process was killed
            raise
        return json.loads(text)

    def _replace(self) -> None:
        # Start the process that replaces a killed one now, in the background, rather than
        # in the next job's time.
        self._nursery.start_soon(_start_process, self._context, self.limiter)


class ProcessDied(TrioTasksError):
    """The process running an isolated handler died (``os._exit``, a signal, a crash)."""


def _rebuilt(crossed: _Crossed) -> BaseException:
    builtin = _BASE_EXCEPTIONS.get(crossed.type_name)
    if builtin is not None:
        return builtin(crossed.message) if crossed.message else builtin()
    # Named after the original, so the job's error shows the handler's exception type.
    rebuilt: BaseException = type(crossed.type_name, (Exception,), {})(crossed.message)
    return rebuilt


@asynccontextmanager
async def open_process_runner(size: int | None) -> AsyncIterator[ProcessRunner]:
    """A :class:`ProcessRunner` whose processes live as long as the ``async with`` block.

    ``size`` defaults to the number of cores. The processes are started before it yields:
    starting one (a new interpreter importing trio-tasks and the handlers' modules) takes up
    to a second here, which must not count against the first jobs' timeouts.
    """
    count = size or os.cpu_count() or 1
    # Imported here: only nodes with process-isolated handlers pay for trio-parallel.
    import trio_parallel

    async with trio_parallel.open_worker_context(grace_period=_GRACE) as context:
        limiter = trio.CapacityLimiter(count)
        async with trio.open_nursery() as starting:
            for _ in range(count):
                starting.start_soon(_start_process, context, limiter)
        async with trio.open_nursery() as nursery:
            try:
                yield ProcessRunner(context, limiter, nursery)
            finally:
                nursery.cancel_scope.cancel()


async def _start_process(
    context: trio_parallel.WorkerContext, limiter: trio.CapacityLimiter
) -> None:
    """Have the pool start a process (a no-op call takes one, or starts one, and keeps it)."""
    await context.run_sync(os.getpid, kill_on_cancel=True, limiter=limiter)


def _broken_worker_error() -> type[BaseException]:
    import trio_parallel

    error: type[BaseException] = trio_parallel.BrokenWorkerError
    return error
