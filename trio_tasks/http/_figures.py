"""The answers of ``GET /stats`` and ``GET /workers``: this node's figures, or the cluster's.

On a broker of its own (memory) a node answers its own figures, exactly as the seed did. On a
shared broker (Redis) the top-level fields are the cluster's: counters since the namespace was
created, queues, running jobs, and the workers of every live node; ``nodes`` lists the live
nodes and ``node`` holds this node's own figures. When the cluster view cannot be read the
top level falls back to this node's figures and ``"cluster"`` says ``"unavailable"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .._durations import format_duration
from .._job import PRIORITIES_HIGH_FIRST, format_time
from .._stats import ClusterView, NodeView, ProcessorStats, WorkerStats

#: ``"cluster"`` of a shared broker's answers: whether the top level is the cluster's.
CLUSTER_AVAILABLE = "available"
CLUSTER_UNAVAILABLE = "unavailable"

_COUNTERS = ("submitted", "completed", "failed", "retried", "cancelled")
#: The seed's fields of ``GET /stats``, which its clients decode: answered exactly.
SEED_STATS = (
    "jobs_submitted",
    "jobs_completed",
    "jobs_failed",
    "workers_active",
    "queue_size",
    "uptime",
)


def live_nodes(
    cluster: ClusterView, node_id: str | None, workers: tuple[WorkerStats, ...]
) -> tuple[NodeView, ...]:
    """The cluster's live nodes, with this node's workers as they are now (not as of its last
    heartbeat), so that one answer agrees with itself."""
    return tuple(
        attrs.evolve(node, workers=workers) if node.id == node_id else node
        for node in cluster.nodes
    )


def busy(workers: Iterable[WorkerStats]) -> int:
    """How many of ``workers`` run a job now."""
    return sum(1 for w in workers if w.state == "busy")


def stats_json(stats: ProcessorStats, shutting_down: bool) -> dict[str, Any]:
    """The body of ``GET /stats``."""
    own = {event: getattr(stats, event) for event in _COUNTERS}
    cluster = stats.cluster
    if stats.node_id is None:
        return _figures(stats, own, stats.workers, shutting_down)
    if cluster is None:
        body = _figures(stats, own, stats.workers, shutting_down)
        body["cluster"] = CLUSTER_UNAVAILABLE
    else:
        nodes = live_nodes(cluster, stats.node_id, stats.workers)
        everyone = tuple(w for node in nodes for w in node.workers)
        body = _figures(stats, cluster.totals, everyone, shutting_down)
        body["cluster"] = CLUSTER_AVAILABLE
        body["nodes"] = [_node_summary(node) for node in nodes]
    body["node"] = {
        "id": stats.node_id,
        **_counters(own),
        "workers": len(stats.workers),
        "workers_busy": stats.workers_busy,
        "queue_wait_seconds": stats.queue_wait.to_json(),
        "run_time_seconds": stats.run_time.to_json(),
        "uptime": _uptime(stats.uptime),
        "uptime_seconds": round(stats.uptime, 3),
        "threads_stuck": stats.threads_stuck,
    }
    return body


def _figures(
    stats: ProcessorStats,
    counters: Mapping[str, int],
    workers: tuple[WorkerStats, ...],
    shutting_down: bool,
) -> dict[str, Any]:
    # Queues and running jobs are the broker's (cluster-wide on a shared one); latencies and
    # uptime are this node's: percentiles of several nodes cannot be combined.
    return {
        # The seed's fields, exactly.
        "jobs_submitted": counters.get("submitted", 0),
        "jobs_completed": counters.get("completed", 0),
        "jobs_failed": counters.get("failed", 0),
        "workers_active": sum(1 for w in workers if w.state != "stopped"),
        "queue_size": stats.queue_size,
        "uptime": _uptime(stats.uptime),
        # Beyond the seed.
        "jobs_running": stats.running,
        "jobs_retried": counters.get("retried", 0),
        "jobs_cancelled": counters.get("cancelled", 0),
        "jobs_scheduled": stats.scheduled,
        "workers": len(workers),
        "workers_busy": busy(workers),
        "queue_sizes": {str(p): stats.queued.get(p, 0) for p in PRIORITIES_HIGH_FIRST},
        "queue_wait_seconds": stats.queue_wait.to_json(),
        "run_time_seconds": stats.run_time.to_json(),
        "uptime_seconds": round(stats.uptime, 3),
        "threads_stuck": stats.threads_stuck,
        "shutting_down": shutting_down,
        # Per-type limits: the broker's (cluster-wide on a shared one).
        "limits": {name: figures.to_json() for name, figures in stats.limits.items()},
    }


def _counters(counters: Mapping[str, int]) -> dict[str, int]:
    return {f"jobs_{event}": counters.get(event, 0) for event in _COUNTERS}


def _node_summary(node: NodeView) -> dict[str, Any]:
    return {
        "id": node.id,
        "seen_at": format_time(node.seen_at),
        "workers": len(node.workers),
        "workers_busy": busy(node.workers),
        **_counters(node.counters),
    }


def _uptime(seconds: float) -> str:
    return format_duration(float(round(seconds)))


def workers_json(
    own: tuple[WorkerStats, ...], node_id: str | None, cluster: ClusterView | None
) -> dict[str, Any]:
    """The body of ``GET /workers``: this node's workers, or every live node's, each with its
    ``node`` on a shared broker."""
    if node_id is None:
        details = [_worker_json(w) for w in own]
    else:
        if cluster is None:
            groups = [(node_id, own)]
        else:
            groups = [(node.id, node.workers) for node in live_nodes(cluster, node_id, own)]
        details = [{**_worker_json(w), "node": name} for name, ws in groups for w in ws]
    body: dict[str, Any] = {
        "workers": len(details),
        "busy": sum(1 for d in details if d["state"] == "busy"),
        "idle": sum(1 for d in details if d["state"] == "idle"),
        "details": details,
    }
    if node_id is not None:
        body["cluster"] = CLUSTER_UNAVAILABLE if cluster is None else CLUSTER_AVAILABLE
        body["node"] = node_id
    return body


def _worker_json(worker: WorkerStats) -> dict[str, Any]:
    return {
        "id": worker.id,
        "state": worker.state,
        "current_job": worker.current_job,
        "processed": worker.processed,
        "succeeded": worker.succeeded,
        "failed": worker.failed,
    }
