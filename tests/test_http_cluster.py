"""Cluster-wide figures of ``/stats``, ``/workers``, ``/metrics`` and ``trio-tasks stats``.

A shared broker is faked here: a memory broker with a node id whose ``cluster()`` answers two
nodes (this one and another), or raises ``BrokerUnavailable``. That pins the HTTP rendering;
``test_two_redis_nodes_show_the_cluster`` checks it against a real redis-server.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import structlog
import trio

import trio_tasks
from trio_tasks import Processor
from trio_tasks._errors import BrokerUnavailable
from trio_tasks._stats import ClusterView, NodeView, WorkerStats
from trio_tasks.brokers._memory import MemoryBroker
from trio_tasks.cli import main
from trio_tasks.http import create_app

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
#: The seed's fields of ``/stats``, in its order.
SEED_STATS = (
    "jobs_submitted",
    "jobs_completed",
    "jobs_failed",
    "workers_active",
    "queue_size",
    "uptime",
)
TOTALS = {
    "submitted": 40,
    "completed": 30,
    "failed": 2,
    "retried": 3,
    "cancelled": 1,
    "leases_expired": 1,
}
SEEN_AT = 1_800_000_000.25


def _worker(name: str, state: str = "idle", job: str | None = None) -> WorkerStats:
    return WorkerStats(name, state, job, 4, 3, 1)


#: The other node: three workers, one of them busy.
OTHER = NodeView(
    "node-b",
    SEEN_AT,
    (_worker("worker-1", "busy", "job-on-b"), _worker("worker-2"), _worker("worker-3")),
    {"submitted": 39, "completed": 30, "failed": 2, "retried": 3, "cancelled": 1},
)


class ClusterBroker(MemoryBroker):
    """A memory broker that says it is node ``node-a`` of a two-node cluster."""

    node_id = "node-a"

    def __init__(self) -> None:
        super().__init__(max_concurrency=100, result_ttl=60, result_max_jobs=100)
        self.unavailable = False

    async def cluster(self) -> ClusterView | None:
        await trio.lowlevel.checkpoint()
        if self.unavailable:
            raise BrokerUnavailable("redis unreachable: connection refused")
        # This node as of its last heartbeat: one worker, stale on purpose (the answer shows
        # this node's workers as they are now).
        this = NodeView("node-a", SEEN_AT - 1, (_worker("worker-1"),), {"submitted": 1})
        return ClusterView(dict(TOTALS), (this, OTHER))


@asynccontextmanager
async def cluster_api(broker: MemoryBroker | None = None) -> AsyncIterator[tuple[Processor, Any]]:
    """A processor on ``broker`` (default: a fresh :class:`ClusterBroker`) and a test client."""
    broker = broker or ClusterBroker()
    registry = trio_tasks.demo_registry()
    async with trio_tasks.open_processor(registry, broker=broker, workers=2) as processor:
        app = create_app(processor)
        app.config["PROPAGATE_EXCEPTIONS"] = True
        yield processor, app.test_client()
        processor.shutdown(grace=0)


async def get_json(client: Any, path: str) -> dict[str, Any]:
    response = await client.get(path)
    answer: dict[str, Any] = await response.get_json()
    assert response.status_code == 200, answer
    return answer


async def metrics(client: Any) -> set[str]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return set((await response.get_data()).decode().splitlines())


async def submit_long_job(client: Any) -> str:
    response = await client.post(
        "/jobs", json={"type": "backup", "payload": {"duration": "1h"}, "timeout": "2h"}
    )
    assert response.status_code == 202
    job_id: str = (await response.get_json())["job_id"]
    await trio.sleep(1)  # the job starts on a worker of this node
    return job_id


# -- /stats ----------------------------------------------------------------------------------


async def test_stats_reports_the_cluster_totals(autojump_clock: trio.abc.Clock) -> None:
    async with cluster_api() as (_, client):
        await submit_long_job(client)
        stats = await get_json(client, "/stats")
    assert tuple(stats)[: len(SEED_STATS)] == SEED_STATS
    assert stats["cluster"] == "available"
    assert (stats["jobs_submitted"], stats["jobs_completed"], stats["jobs_failed"]) == (40, 30, 2)
    assert (stats["jobs_retried"], stats["jobs_cancelled"]) == (3, 1)
    # Every live node's workers: this node's two (as they are now) and the other's three.
    assert (stats["workers"], stats["workers_active"], stats["workers_busy"]) == (5, 5, 2)
    # Queues and running jobs come from the broker (cluster-wide on a real shared one).
    assert stats["jobs_running"] == 1
    assert stats["queue_size"] == 0


async def test_stats_lists_the_live_nodes(autojump_clock: trio.abc.Clock) -> None:
    async with cluster_api() as (_, client):
        await submit_long_job(client)
        stats = await get_json(client, "/stats")
    nodes = {node["id"]: node for node in stats["nodes"]}
    assert list(nodes) == ["node-a", "node-b"]
    assert nodes["node-b"] == {
        "id": "node-b",
        "seen_at": "2027-01-15T08:00:00.250000Z",
        "workers": 3,
        "workers_busy": 1,
        "jobs_submitted": 39,
        "jobs_completed": 30,
        "jobs_failed": 2,
        "jobs_retried": 3,
        "jobs_cancelled": 1,
    }
    assert RFC3339.match(nodes["node-a"]["seen_at"])
    assert (nodes["node-a"]["workers"], nodes["node-a"]["workers_busy"]) == (2, 1)


async def test_stats_keeps_this_nodes_own_figures_apart(autojump_clock: trio.abc.Clock) -> None:
    async with cluster_api() as (_, client):
        await submit_long_job(client)
        await trio.sleep(3600 * 2)
        stats = await get_json(client, "/stats")
    node = stats["node"]
    assert node["id"] == "node-a"
    assert (node["jobs_submitted"], node["jobs_completed"], node["jobs_failed"]) == (1, 1, 0)
    assert (node["jobs_retried"], node["jobs_cancelled"]) == (0, 0)
    assert (node["workers"], node["workers_busy"]) == (2, 0)
    assert node["run_time_seconds"]["count"] == 1
    assert node["queue_wait_seconds"]["count"] == 1
    assert node["uptime"].startswith("2h")
    assert node["uptime_seconds"] >= 7200


async def test_stats_without_the_cluster_view_answers_this_nodes_figures(
    autojump_clock: trio.abc.Clock,
) -> None:
    broker = ClusterBroker()
    broker.unavailable = True
    async with cluster_api(broker) as (_, client):
        await submit_long_job(client)
        response = await client.get("/stats")
        stats = await response.get_json()
    assert response.status_code == 200
    assert stats["cluster"] == "unavailable"
    assert "nodes" not in stats
    assert (stats["jobs_submitted"], stats["workers"], stats["workers_busy"]) == (1, 2, 1)
    assert stats["node"]["id"] == "node-a"
    assert stats["node"]["jobs_submitted"] == 1


async def test_stats_on_the_memory_broker_has_no_cluster_fields() -> None:
    broker = MemoryBroker(max_concurrency=10, result_ttl=60, result_max_jobs=10)
    async with cluster_api(broker) as (_, client):
        stats = await get_json(client, "/stats")
    assert not {"cluster", "nodes", "node"} & set(stats)
    assert tuple(stats)[: len(SEED_STATS)] == SEED_STATS


# -- /workers --------------------------------------------------------------------------------


async def test_workers_lists_every_live_nodes_workers(autojump_clock: trio.abc.Clock) -> None:
    async with cluster_api() as (_, client):
        job_id = await submit_long_job(client)
        answer = await get_json(client, "/workers")
    assert (answer["workers"], answer["busy"], answer["idle"]) == (5, 2, 3)
    assert (answer["cluster"], answer["node"]) == ("available", "node-a")
    by_node = sorted((w["node"], w["id"], w["current_job"]) for w in answer["details"])
    assert by_node[2:] == [
        ("node-b", "worker-1", "job-on-b"),
        ("node-b", "worker-2", None),
        ("node-b", "worker-3", None),
    ]
    assert {w["node"] for w in answer["details"][:2]} == {"node-a"}
    assert job_id in {w["current_job"] for w in answer["details"] if w["node"] == "node-a"}


async def test_workers_without_the_cluster_view_lists_this_nodes() -> None:
    broker = ClusterBroker()
    broker.unavailable = True
    async with cluster_api(broker) as (_, client):
        answer = await get_json(client, "/workers")
    assert (answer["workers"], answer["cluster"]) == (2, "unavailable")
    assert {(w["node"], w["id"]) for w in answer["details"]} == {
        ("node-a", "worker-1"),
        ("node-a", "worker-2"),
    }


# -- /metrics --------------------------------------------------------------------------------


async def test_metrics_gauges_report_the_cluster(autojump_clock: trio.abc.Clock) -> None:
    async with cluster_api() as (_, client):
        await submit_long_job(client)
        lines = await metrics(client)
    assert "trio_tasks_cluster_available 1.0" in lines
    assert "trio_tasks_cluster_nodes 2.0" in lines
    assert "trio_tasks_cluster_workers 5.0" in lines
    assert "trio_tasks_cluster_workers_busy 2.0" in lines
    for event, count in TOTALS.items():
        assert f'trio_tasks_cluster_jobs{{event="{event}"}} {float(count)}' in lines
    # Counters stay this node's own; this node's worker gauges too.
    assert 'trio_tasks_jobs_submitted_total{priority="normal",type="backup"} 1.0' in lines
    assert {"trio_tasks_workers 2.0", "trio_tasks_workers_busy 1.0"} <= lines
    assert "trio_tasks_jobs_running 1.0" in lines


async def test_metrics_without_the_cluster_view_say_so() -> None:
    broker = ClusterBroker()
    async with cluster_api(broker) as (_, client):
        assert "trio_tasks_cluster_nodes 2.0" in await metrics(client)
        broker.unavailable = True
        lines = await metrics(client)
    assert "trio_tasks_cluster_available 0.0" in lines
    # Absent, not stale.
    assert not any(line.startswith("trio_tasks_cluster_nodes") for line in lines)
    assert not any(line.startswith("trio_tasks_cluster_jobs") for line in lines)


async def test_metrics_on_the_memory_broker_have_no_cluster_gauges() -> None:
    broker = MemoryBroker(max_concurrency=10, result_ttl=60, result_max_jobs=10)
    async with cluster_api(broker) as (_, client):
        lines = await metrics(client)
    assert "trio_tasks_workers 2.0" in lines
    assert not any("cluster" in line for line in lines)


# -- trio-tasks stats ------------------------------------------------------------------------


async def test_the_stats_command_prints_the_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    quiet = structlog.wrap_logger(structlog.ReturnLogger())
    config = trio_tasks.Config(server_host="127.0.0.1", server_port=0, workers=2)
    processor = Processor(trio_tasks.demo_registry(), config, broker=ClusterBroker(), logger=quiet)
    async with trio.open_nursery() as nursery:
        await nursery.start(processor.run)
        urls = await nursery.start(trio_tasks.serve, processor, config)
        status = await trio.to_thread.run_sync(main, ["stats", "--url", urls[0]])
        processor.shutdown(grace=0)
    out = capsys.readouterr().out
    assert status == 0
    stats = json.loads(out)
    assert stats["jobs_submitted"] == 40
    assert [node["id"] for node in stats["nodes"]] == ["node-a", "node-b"]
    assert stats["node"]["id"] == "node-a"
    # Indented, one field a line: readable as it is.
    assert '\n  "nodes": [\n    {\n      "id": "node-a",' in out


# -- a real cluster --------------------------------------------------------------------------


async def test_two_redis_nodes_show_the_cluster(redis_url: str) -> None:
    registry = trio_tasks.demo_registry(min_duration=0, max_duration=0)
    async with (
        trio_tasks.open_processor(registry, broker=redis_url, workers=2) as first,
        trio_tasks.open_processor(registry, broker=redis_url, workers=3) as second,
    ):
        clients = [create_app(p).test_client() for p in (first, second)]
        for index in range(5):
            response = await clients[index % 2].post(
                "/jobs", json={"type": "email", "job_id": f"job-{index}"}
            )
            assert response.status_code == 202
        for index in range(5):
            await clients[0].get(f"/jobs/job-{index}", query_string={"wait": "10s"})
        own_ids = [(await p.stats()).node_id for p in (first, second)]
        node_ids = set(own_ids)
        # Until both nodes' registry entries (refreshed by their heartbeats) count every job.
        with trio.fail_after(10):
            while True:
                nodes = (await get_json(clients[0], "/stats")).get("nodes", ())
                done = sum(node["jobs_completed"] for node in nodes)
                if {node["id"] for node in nodes} == node_ids and done == 5:
                    break
                await trio.sleep(0.05)
        answers = [await get_json(client, "/stats") for client in clients]
        workers = [await get_json(client, "/workers") for client in clients]
        first.shutdown(grace=0)
        second.shutdown(grace=0)
    for stats, own_id in zip(answers, own_ids, strict=True):
        assert stats["cluster"] == "available"
        assert (stats["jobs_submitted"], stats["jobs_completed"]) == (5, 5)
        assert (stats["workers"], stats["queue_size"]) == (5, 0)
        assert {node["id"] for node in stats["nodes"]} == node_ids
        assert sum(node["jobs_submitted"] for node in stats["nodes"]) == 5
        assert stats["node"]["id"] == own_id
    assert answers[0]["node"]["jobs_submitted"] == 3
    assert answers[1]["node"]["jobs_submitted"] == 2
    for answer in workers:
        assert answer["workers"] == 5
        by_node = {n: sum(1 for w in answer["details"] if w["node"] == n) for n in node_ids}
        assert sorted(by_node.values()) == [2, 3]
