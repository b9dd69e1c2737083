"""OpenTelemetry: a span per attempt, the child of the submitter's span, across Redis too."""

from __future__ import annotations

import pytest
import trio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from trio_tasks import JobContext, JobStatus, TaskRegistry, open_processor
from trio_tasks.otel import instrument


def _traced() -> tuple[TaskRegistry, TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tasks = TaskRegistry()

    @tasks.task("work", retries=1)
    async def work(ctx: JobContext) -> str:
        if ctx.payload.get("fail") and ctx.attempt == 1:
            raise ValueError("first attempt fails")
        return "done"

    instrument(tasks, tracer_provider=provider)
    return tasks, provider, exporter


async def test_each_attempt_is_a_span_under_the_submitters_span() -> None:
    tasks, provider, exporter = _traced()
    tracer = provider.get_tracer("test")
    with trio.fail_after(20):
        async with open_processor(tasks, workers=1, retry_delay=0) as processor:
            with tracer.start_as_current_span("request") as request:
                job = await processor.submit("work", {"fail": True})
            done = await processor.wait(job.id)
    assert done.status is JobStatus.COMPLETED
    assert "traceparent" in done.meta
    runs = [s for s in exporter.get_finished_spans() if s.name == "trio_tasks.run work"]
    assert [s.attributes["trio_tasks.job.attempt"] for s in runs] == [1, 2]  # type: ignore[index]
    parent = request.get_span_context()
    for span in runs:
        assert span.kind is SpanKind.CONSUMER
        assert span.context.trace_id == parent.trace_id
        assert span.parent is not None
        assert span.parent.span_id == parent.span_id
        assert span.attributes["trio_tasks.job.id"] == job.id  # type: ignore[index]
    assert runs[0].status.status_code is StatusCode.ERROR
    assert runs[0].events[0].name == "exception"
    assert runs[1].status.status_code is not StatusCode.ERROR


@pytest.mark.redis
async def test_the_trace_crosses_redis_to_the_node_that_runs_the_job(redis_url: str) -> None:
    tasks, provider, exporter = _traced()
    tracer = provider.get_tracer("test")
    with trio.fail_after(20):
        async with (
            open_processor(tasks, broker=redis_url, workers=0) as producer,
            open_processor(tasks, broker=redis_url, workers=2),
        ):
            with tracer.start_as_current_span("request") as request:
                job = await producer.submit("work")
            done = await producer.wait(job.id)
    assert done.status is JobStatus.COMPLETED
    (run,) = [s for s in exporter.get_finished_spans() if s.name == "trio_tasks.run work"]
    assert run.parent is not None
    assert run.parent.span_id == request.get_span_context().span_id
    assert run.context.trace_id == request.get_span_context().trace_id
