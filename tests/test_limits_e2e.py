"""Per-type limits across real processes: ``trio-tasks worker`` nodes on one Redis never run
more jobs of a capped type at once than its ``concurrency``, together."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from test_redis_cluster_e2e import Cluster, cluster_for, submit_batch, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.redis]

__all__ = ["cluster_for"]  # the fixture, used by name


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


def test_a_concurrency_limit_holds_across_nodes(
    cluster_for: Callable[[str], Cluster], redis_url: str
) -> None:
    cluster = cluster_for(redis_url)
    api = cluster.start("serve", 0)  # the API only
    first = cluster.start("worker", 2)
    with httpx.Client(base_url=api.url, timeout=10) as http:
        # The first node takes the type's two slots with jobs of 1 s...
        early = submit_batch(http, [{"type": "capped", "payload": {"seconds": 1.0}}] * 2)
        wait_until(
            lambda: http.get("/stats").json()["limits"]["capped"]["running"] == 2,
            10,
            "both slots taken",
        )
        # ...then a second node with 4 idle workers joins: a limit kept per node would let it
        # start 2 more at once; the cluster-wide one holds them until a slot frees.
        second = cluster.start("worker", 4)
        late = submit_batch(http, [{"type": "capped", "payload": {"seconds": 0.2}}] * 6)
        others = submit_batch(http, [{"type": "noop"}] * 8)
        wait_until(
            lambda: int(cluster.redis("ZCARD", f"{cluster.prefix}finished")) == 16,
            60,
            "16 finished jobs",
        )
        limits: dict[str, Any] = http.get("/stats").json()["limits"]
    events = cluster.events()
    spans = []
    for _, event, rest in events:
        if event == "span":
            start, end, job_id = rest.split(" ")
            spans.append((float(start), float(end)))
            assert job_id in early + late
    assert len(spans) == 8
    assert _most_at_once(spans) == 2  # the cap, reached and never passed
    ran = {job_id for _, event, job_id in events if event == "run"}
    assert ran == set(others)  # the capped backlog held no other type back
    assert limits["capped"] == {"concurrency": 2, "rate": None, "running": 0, "held": 0}
    for node in (api, first, second):
        assert node.process.poll() is None
