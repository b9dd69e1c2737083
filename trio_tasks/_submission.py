"""A submission becomes a :class:`Job`: the registry's and the node's defaults applied, then
the registry's submit hooks."""

from __future__ import annotations

from typing import Any

from ._config import Config
from ._job import Job
from ._registry import TaskRegistry
from ._request import JobRequest, new_job_id


def new_job(registry: TaskRegistry, config: Config, request: JobRequest, now: float) -> Job:
    """The job ``request`` asks for, submitted at ``now``: its timeout and retries are the
    request's, else its type's, else the node's.

    Raises:
        UnknownJobType: no handler (and no fallback) for the type.
    """
    spec = registry.get(request.type)
    retries = _first(request.retries, spec.retries, config.retry_attempts)
    run_at = request.run_at
    if request.delay is not None:
        run_at = now + request.delay
    return Job(
        id=request.job_id or new_job_id(),
        type=request.type,
        priority=request.priority,
        payload=request.payload,
        max_attempts=retries + 1,
        timeout=_first(request.timeout, spec.timeout, config.job_timeout),
        created_at=now,
        run_at=run_at,
    )


def run_submit_hooks(registry: TaskRegistry, job: Job, log: Any) -> None:
    """Call every submit hook of ``registry`` on ``job``; a failing hook is logged, never
    raised (a tracing hook must not turn a good submission into an error)."""
    for hook in registry.submit_hooks:
        try:
            hook(job)
        except Exception:
            log.exception("submit hook failed", hook=repr(hook), job_id=job.id)
    # What crosses to other nodes is text: keep the entries so.
    job.meta = {str(key): str(value) for key, value in job.meta.items()}


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None
