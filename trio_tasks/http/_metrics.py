"""Prometheus metrics of one processor, in a registry of their own (not the global one).

Counters and histograms are fed by a processor listener as job events happen; gauges (queues,
running jobs, busy workers) are read from :meth:`Processor.stats` at scrape time, so they are
exact when scraped and cost nothing in between.

Counters (``*_total``) are this node's own, as Prometheus expects (sum them across nodes). On a
shared broker (Redis) the queue, scheduled and running gauges are the cluster's, and the
``cluster_*`` gauges add the live nodes, their workers and the cluster-wide totals by event:
the same on every node, so they are not to be summed across nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
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
from prometheus_client.core import GaugeMetricFamily, Metric

from .._job import Job, Priority, queue_wait
from .._processor import Processor
from .._stats import ProcessorStats
from ._figures import busy, live_nodes

#: The ``Content-Type`` of :meth:`Metrics.render`'s output.
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

_DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800,
)  # fmt: skip
_EVENTS = ("submitted", "completed", "failed", "retried", "cancelled", "requeued")
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
        self._stuck = Gauge(
            "threads_stuck",
            "Threads still running the handler of a job that timed out or was cancelled",
            **_g(namespace, registry),
        )
        self._cluster = _ClusterGauges(namespace)
        registry.register(self._cluster)
        self._limits = _LimitGauges(namespace)
        registry.register(self._limits)
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
            wait = queue_wait(job)
            if wait is not None:
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
        self._stuck.set(stats.threads_stuck)
        # No checkpoint between these two lines: a concurrent scrape cannot swap the snapshot.
        self._cluster.stats = stats
        self._limits.stats = stats
        return generate_latest(self.registry)


class _ClusterGauges:
    """The ``cluster_*`` gauges, from the last snapshot :meth:`Metrics.render` took.

    A collector rather than ``Gauge`` objects so that what is not known is absent rather than
    stale: nothing on a broker of its own, and only ``cluster_available 0`` while a shared
    broker's cluster view cannot be read.
    """

    def __init__(self, namespace: str) -> None:
        self.prefix = f"{namespace}_cluster_"
        self.stats: ProcessorStats | None = None

    def describe(self) -> list[Metric]:
        # Names depend on the broker; nothing to check against other collectors up front.
        return []

    def collect(self) -> Iterator[Metric]:
        stats, prefix = self.stats, self.prefix
        if stats is None or stats.node_id is None:
            return
        cluster = stats.cluster
        yield GaugeMetricFamily(
            f"{prefix}available",
            "1 when the shared broker's cluster view was read for this scrape, else 0",
            value=0 if cluster is None else 1,
        )
        if cluster is None:
            return
        nodes = live_nodes(cluster, stats.node_id, stats.workers)
        workers = [w for node in nodes for w in node.workers]
        yield GaugeMetricFamily(f"{prefix}nodes", "Live nodes of the cluster", value=len(nodes))
        yield GaugeMetricFamily(
            f"{prefix}workers", "Worker tasks of every live node", value=len(workers)
        )
        yield GaugeMetricFamily(
            f"{prefix}workers_busy",
            "Workers of every live node running a job now",
            value=busy(workers),
        )
        totals = GaugeMetricFamily(
            f"{prefix}jobs",
            "Cluster-wide job events since the namespace was created, by event; every node "
            "reports the same figures: do not sum across nodes",
            labels=("event",),
        )
        for event, count in sorted(cluster.totals.items()):
            totals.add_metric((event,), count)
        yield totals


class _LimitGauges:
    """The per-type limit gauges (``type_running``, ``type_held``, ``type_concurrency_limit``,
    ``type_rate_limit``), from the last snapshot :meth:`Metrics.render` took: only the types
    with limits, so a type whose limit is gone leaves no stale series. Cluster-wide on a shared
    broker (the same on every node: do not sum across nodes)."""

    def __init__(self, namespace: str) -> None:
        self.prefix = f"{namespace}_type_"
        self.stats: ProcessorStats | None = None

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        if stats is None or not stats.limits:
            return
        prefix = self.prefix
        running = GaugeMetricFamily(
            f"{prefix}running", "Jobs of a limited type running now", labels=("type",)
        )
        held = GaugeMetricFamily(
            f"{prefix}held",
            "Jobs of a limited type held back by its limit (pending, holding no worker)",
            labels=("type",),
        )
        concurrency = GaugeMetricFamily(
            f"{prefix}concurrency_limit",
            "The concurrency limit of a job type (jobs running at once)",
            labels=("type",),
        )
        rate = GaugeMetricFamily(
            f"{prefix}rate_limit",
            "The rate limit of a job type: starts allowed per period",
            labels=("type", "period"),
        )
        for name, figures in stats.limits.items():
            running.add_metric((name,), figures.running)
            held.add_metric((name,), figures.held)
            if figures.concurrency is not None:
                concurrency.add_metric((name,), figures.concurrency)
            if figures.rate is not None:
                count, _, period = figures.rate.partition("/")
                rate.add_metric((name, period), float(count))
        yield running
        yield held
        yield concurrency
        yield rate


def _g(namespace: str, registry: CollectorRegistry) -> dict[str, Any]:
    return {"namespace": namespace, "registry": registry}
