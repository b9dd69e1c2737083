"""Prometheus metrics of one processor, in a registry of their own (not the global one).

Counters and histograms are fed by a processor listener as job events happen; gauges (queues,
running jobs, busy workers) are read from :meth:`Processor.stats` at scrape time, so they are
exact when scraped and cost nothing in between.
"""

from __future__ import annotations

from typing import Any

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from .._job import Job, Priority
from .._processor import Processor

#: The ``Content-Type`` of :meth:`Metrics.render`'s output.
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

_DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800,
)  # fmt: skip
_EVENTS = ("submitted", "completed", "failed", "retried", "cancelled")
_ENDS = frozenset({"completed", "failed", "retried", "cancelled"})


class Metrics:
    """The metrics of ``processor``; :meth:`render` gives the Prometheus text format.

    Creating it registers a listener on the processor.
    """

    def __init__(self, processor: Processor, namespace: str = "trio_tasks") -> None:
        self.processor = processor
        self.registry = registry = CollectorRegistry(auto_describe=True)
        by_job = ("type", "priority")
        self._counters = {
            event: Counter(
                f"jobs_{event}",
                f"Jobs {event}" + (" (attempts followed by a retry)" if event == "retried" else ""),
                by_job,
                namespace=namespace,
                registry=registry,
            )
            for event in _EVENTS
        }
        self._duration = Histogram(
            "job_duration_seconds",
            "Run time of job attempts, by outcome (completed, failed, retried, cancelled)",
            ("type", "outcome"),
            namespace=namespace,
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self._queue_wait = Histogram(
            "job_queue_wait_seconds",
            "Time from a job becoming runnable to a worker starting it",
            ("type", "priority"),
            namespace=namespace,
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self._queue_size = Gauge(
            "queue_size", "Jobs waiting, by priority", ("priority",), **_g(namespace, registry)
        )
        self._scheduled = Gauge(
            "jobs_scheduled", "Delayed jobs and waiting retries", **_g(namespace, registry)
        )
        self._running = Gauge("jobs_running", "Jobs running now", **_g(namespace, registry))
        self._workers = Gauge("workers", "Worker tasks of this node", **_g(namespace, registry))
        self._busy = Gauge("workers_busy", "Workers running a job now", **_g(namespace, registry))
        self._uptime = Gauge("uptime_seconds", "Seconds since start", **_g(namespace, registry))
        # Labelled children are cached: ``labels()`` takes a lock and builds a key every call.
        self._children: dict[tuple[str, str, str], Any] = {}
        # trio time at which each running job started on this node, for the duration histogram.
        self._started: dict[str, float] = {}
        processor.add_listener(self._on_event)

    def _child(self, metric: Any, key: tuple[str, str, str], *labels: str) -> Any:
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _on_event(self, event: str, job: Job) -> None:
        job_type = job.type
        priority = str(job.priority)
        if event == "started":
            self._started[job.id] = trio.current_time()
            if job.started_at is not None:
                became_runnable = job.run_at if job.run_at is not None else job.created_at
                wait = max(0.0, job.started_at - became_runnable)
                key = ("wait", job_type, priority)
                self._child(self._queue_wait, key, job_type, priority).observe(wait)
            return
        counter = self._counters.get(event)
        if counter is not None:
            self._child(counter, (event, job_type, priority), job_type, priority).inc()
        if event in _ENDS:
            started = self._started.pop(job.id, None)
            if started is not None:
                key = ("duration", job_type, event)
                child = self._child(self._duration, key, job_type, event)
                child.observe(trio.current_time() - started)

    async def render(self) -> bytes:
        """Refresh the gauges and return every metric in the Prometheus text format."""
        stats = await self.processor.stats()
        for priority in Priority:
            self._queue_size.labels(str(priority)).set(stats.queued.get(priority, 0))
        self._scheduled.set(stats.scheduled)
        self._running.set(stats.running)
        self._workers.set(len(stats.workers))
        self._busy.set(stats.workers_busy)
        self._uptime.set(stats.uptime)
        return generate_latest(self.registry)


def _g(namespace: str, registry: CollectorRegistry) -> dict[str, Any]:
    return {"namespace": namespace, "registry": registry}
