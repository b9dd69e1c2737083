"""What the routes reach through the app (``app.extensions["trio_tasks"]``): the processor,
the metrics, and the long-polls in progress."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
import trio

from .._config import Config
from .._durations import format_duration
from .._errors import BrokerUnavailable, JobNotFound
from .._job import Job
from .._logging import log_enabled
from .._processor import Processor
from .._request import valid_name
from .._stats import ClusterView
from ._metrics import Metrics

#: Request bodies decoded in worker threads at once (see ``_input.read_json``): each may take
#: a core for a while, so they queue rather than crowd out the event loop.
JSON_THREADS = 2


class ApiState:
    """The processor behind an app and what its routes share.

    The processor's methods used on every request are bound once here (the routes are the hot
    path). :func:`trio_tasks.serve` calls :meth:`stop_waiting` when the server stops, so a
    client waiting on a job that will never finish gets the job as it is instead of a hung
    request.
    """

    def __init__(self, processor: Processor, config: Config) -> None:
        self.processor = processor
        self.config = config
        self.metrics = Metrics(processor)
        #: This node's id on a shared broker (Redis), ``None`` on a broker of its own.
        self.node_id: str | None = processor.broker.node_id
        self.submit_many = processor.submit_many
        self.wait_job = processor.wait
        self.json_limiter = trio.CapacityLimiter(JSON_THREADS)
        self._log = structlog.get_logger("trio_tasks")
        self._debug = log_enabled(self._log, logging.DEBUG)
        self.shutting_down_reason = (
            "shutdown requested: no new jobs are accepted; running jobs get "
            f"{format_duration(processor.config.shutdown_timeout)} to finish"
        )
        self._waits: set[trio.CancelScope] = set()
        self._stopped = False

    async def get_job(self, job_id: str) -> Job:
        """The job ``job_id``; an id no job can have (too long, control characters) is not
        looked up at all.

        Raises:
            JobNotFound: no such job.
        """
        if not valid_name(job_id):
            raise JobNotFound(job_id[:200])
        return await self.processor.get(job_id)

    async def cancel_job(self, job_id: str) -> Job:
        """Cancel ``job_id`` (see :meth:`Processor.cancel`), not looking up impossible ids."""
        if not valid_name(job_id):
            raise JobNotFound(job_id[:200])
        return await self.processor.cancel(job_id)

    def ignored_params(self, names: list[str]) -> None:
        """Log (at debug) the query parameters a request gave that its endpoint ignores."""
        if self._debug:
            self._log.debug("query parameters ignored", names=sorted(names)[:20])

    async def cluster(self) -> ClusterView | None:
        """The shared broker's cluster view; ``None`` on a broker of its own, or when the
        shared broker cannot be reached (the answer is then this node's alone)."""
        try:
            return await self.processor.broker.cluster()
        except BrokerUnavailable:
            return None

    @contextmanager
    def waiting(self, seconds: float) -> Iterator[trio.CancelScope]:
        """A cancel scope of ``seconds`` that :meth:`stop_waiting` also cancels."""
        with trio.move_on_after(seconds) as scope:
            if self._stopped:
                scope.cancel()
            self._waits.add(scope)
            try:
                yield scope
            finally:
                self._waits.discard(scope)

    def stop_waiting(self) -> None:
        """End every wait in progress, and every later one at once."""
        self._stopped = True
        for scope in self._waits:
            scope.cancel()
