"""What a handler receives: :class:`JobContext`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._errors import InvalidValue
from ._job import Job, json_problem

if TYPE_CHECKING:
    import structlog


class JobContext:
    """The running job as its handler sees it.

    Attributes:
        job: the :class:`Job` (a live record: read it, do not change it).
        payload: the job's JSON payload.
        attempt: which attempt this is, starting at 1.
        worker_id: the worker running it.

    Plain ``def`` handlers run in a thread; they report progress with
    ``trio.from_thread.run(ctx.set_progress, value)``.
    """

    __slots__ = ("_log", "_logger", "_report_progress", "attempt", "job", "payload", "worker_id")

    def __init__(
        self,
        job: Job,
        worker_id: str,
        logger: Any,
        report_progress: Callable[[Job, Any], Awaitable[None]],
    ) -> None:
        self.job = job
        self.payload = job.payload
        self.attempt = job.attempts
        self.worker_id = worker_id
        self._logger = logger
        self._log: Any = None
        self._report_progress = report_progress

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger:
        """A logger bound to this job's id, type, attempt and worker (bound on first use)."""
        if self._log is None:
            self._log = self._logger.bind(
                job_id=self.job.id,
                job_type=self.job.type,
                attempt=self.attempt,
                worker_id=self.worker_id,
            )
        return self._log  # type: ignore[no-any-return]

    async def set_progress(self, value: Any) -> None:
        """Record the job's progress (any JSON value, e.g. ``0.5`` or ``{"done": 3}``).

        ``GET /jobs/{id}`` shows the latest value; the event streams (``GET /jobs/{id}/events``,
        ``GET /events``) send each one as it is reported.

        Raises:
            InvalidValue: ``value`` is not a JSON value the API can send (NaN, a cycle, an
                integer of more than 4,300 digits): nothing is recorded.
        """
        problem = json_problem(value)
        if problem is not None:
            raise InvalidValue(f"progress is not JSON-serialisable: {problem}")
        await self._report_progress(self.job, value)
