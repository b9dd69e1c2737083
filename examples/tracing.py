"""Trace jobs with OpenTelemetry: the span of each attempt is a child of the submitter's span.

Run it with ``python examples/tracing.py`` (needs ``pip install 'trio-tasks[otel]'
opentelemetry-sdk``). It prints the spans the SDK collected: the ``submit`` span of the
program and, under it, one ``trio_tasks.run`` span per attempt of the job (the first attempt
fails and is retried).
"""

from __future__ import annotations

import trio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import trio_tasks
from trio_tasks.otel import instrument

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))

tasks = trio_tasks.TaskRegistry()
instrument(tasks, tracer_provider=provider)


@tasks.task("report", retries=1)
async def report(ctx: trio_tasks.JobContext) -> str:
    """Fail the first attempt, succeed the second."""
    if ctx.attempt == 1:
        raise ConnectionError("the database blinked")
    return "sent"


async def main() -> None:
    tracer = provider.get_tracer("example")
    async with trio_tasks.open_processor(tasks, workers=1, retry_delay=0) as processor:
        with tracer.start_as_current_span("submit"):
            job = await processor.submit("report")
        await processor.wait(job.id)
    spans = {span.context.span_id: span for span in exporter.get_finished_spans()}
    for span in sorted(spans.values(), key=lambda s: s.start_time or 0):
        parent = spans.get(span.parent.span_id) if span.parent else None
        under = f" (child of {parent.name})" if parent else ""
        print(f"{span.name}{under}: {span.status.status_code.name}")


if __name__ == "__main__":
    trio.run(main)
