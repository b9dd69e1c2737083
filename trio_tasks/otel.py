"""OpenTelemetry tracing for trio-tasks: a span per attempt, linked to the submitter's span.

Needs ``opentelemetry-api`` (``pip install 'trio-tasks[otel]'``); the host configures the SDK
and its exporters as usual. :func:`instrument` adds two things to a registry:

- a submit hook that writes the current trace context (W3C ``traceparent``/``tracestate``) into
  the job's ``meta``, which travels with the job through any broker (Redis included) to the node
  that runs it;
- a middleware that runs each attempt in a span ``trio_tasks.run <type>`` (kind ``CONSUMER``)
  whose parent is that context, with the job's id, type, priority and attempt as attributes;
  an exception is recorded on the span and sets its status to error.

Every node that runs jobs and every producer that submits them should call :func:`instrument`
on its registry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ._context import JobContext
from ._job import Job
from ._registry import TaskRegistry

#: The name of trio-tasks' tracer.
TRACER_NAME = "trio_tasks"


def instrument(
    registry: TaskRegistry, *, tracer_provider: trace.TracerProvider | None = None
) -> None:
    """Trace every job submitted through, and every attempt run by, processors of ``registry``.

    ``tracer_provider`` defaults to the global one.
    """
    tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)

    def inject_context(job: Job) -> None:
        propagate.inject(job.meta)

    async def span_per_attempt(ctx: JobContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        job = ctx.job
        parent = propagate.extract(job.meta)
        attributes: dict[str, str | int] = {
            "trio_tasks.job.id": job.id,
            "trio_tasks.job.type": job.type,
            "trio_tasks.job.priority": str(job.priority),
            "trio_tasks.job.attempt": ctx.attempt,
            "trio_tasks.worker.id": ctx.worker_id,
        }
        with tracer.start_as_current_span(
            f"trio_tasks.run {job.type}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return await call_next()
            except BaseException as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise

    registry.on_submit(inject_context)
    registry.middleware(span_per_attempt)
