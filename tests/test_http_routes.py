"""The shape of the HTTP app: module-level routes in one blueprint, reaching the processor
through the app they are mounted on (``app.extensions["trio_tasks"]``)."""

from __future__ import annotations

import re
import sys

import pytest
import trio

import trio_tasks
from trio_tasks._config import build_config
from trio_tasks.http import ApiState, _routes, create_app


async def test_every_route_is_a_module_level_function_of_the_blueprint() -> None:
    async with trio_tasks.open_processor(trio_tasks.demo_registry(), workers=0) as processor:
        app = create_app(processor)
        processor.shutdown(grace=0)
    # The API's blueprint first; others (the dashboard's, the event streams') each in a module
    # of its own.
    assert next(iter(app.blueprints)) == "trio_tasks"
    assert app.blueprints["trio_tasks"].import_name == _routes.__name__
    routes = {r.endpoint: r for r in app.url_map.iter_rules() if r.endpoint != "static"}
    assert routes, "no routes"
    for endpoint in routes:
        blueprint, _, name = endpoint.partition(".")
        module = sys.modules[app.blueprints[blueprint].import_name]
        assert app.view_functions[endpoint] is getattr(module, name)


async def test_the_index_lists_every_route() -> None:
    async with trio_tasks.open_processor(trio_tasks.demo_registry(), workers=0) as processor:
        app = create_app(processor)
        processor.shutdown(grace=0)
    served = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(\w+:)?job_id>", "{id}", rule.rule)
        path = re.sub(r"<(\w+:)?name>", "{name}", path)
        served |= {f"{method} {path}" for method in rule.methods or () if method in _METHODS}
    assert served - {"GET /"} == set(_routes.ENDPOINTS)


_METHODS = {"GET", "POST", "DELETE"}


async def test_the_routes_answer_for_the_processor_of_their_app() -> None:
    registry = trio_tasks.demo_registry()
    async with (
        trio_tasks.open_processor(registry, workers=1) as first,
        trio_tasks.open_processor(registry, workers=3) as second,
    ):
        one, two = create_app(first), create_app(second)
        response = await one.test_client().post("/jobs", query_string={"type": "email"})
        assert response.status_code == 202
        stats_one = await (await one.test_client().get("/stats")).get_json()
        stats_two = await (await two.test_client().get("/stats")).get_json()
        workers_two = await (await two.test_client().get("/workers")).get_json()
        first.shutdown(grace=0)
        second.shutdown(grace=0)
    assert (stats_one["jobs_submitted"], stats_one["workers"]) == (1, 1)
    assert (stats_two["jobs_submitted"], stats_two["workers"]) == (0, 3)
    assert workers_two["workers"] == 3


async def test_the_app_state_is_the_one_the_routes_use() -> None:
    async with (
        trio_tasks.open_processor(trio_tasks.demo_registry(), workers=1) as processor,
        trio_tasks.open_processor(trio_tasks.demo_registry(), workers=4) as other,
    ):
        app = create_app(processor)
        state = app.extensions["trio_tasks"]
        assert isinstance(state, ApiState)
        assert state.processor is processor
        # Swapping the state swaps what every route sees: nothing is captured at creation.
        app.extensions["trio_tasks"] = ApiState(other, build_config(workers=4))
        answer = await (await app.test_client().get("/workers")).get_json()
        processor.shutdown(grace=0)
        other.shutdown(grace=0)
    assert answer["workers"] == 4


async def test_stats_and_metrics_agree_on_queue_wait(autojump_clock: trio.abc.Clock) -> None:
    registry = trio_tasks.demo_registry(min_duration=0, max_duration=0)
    async with trio_tasks.open_processor(registry, workers=1) as processor:
        client = create_app(processor).test_client()
        # One job waits behind another for a worker, one for its delay: both kinds of wait.
        await client.post("/jobs", json={"type": "backup", "payload": {"duration": "30s"}})
        await client.post("/jobs", json={"type": "email", "job_id": "queued"})
        await client.post("/jobs", json={"type": "email", "job_id": "later", "delay": "40s"})
        await client.get("/jobs/later", query_string={"wait": "60s"})
        stats = await (await client.get("/stats")).get_json()
        text = (await (await client.get("/metrics")).get_data()).decode()
        processor.shutdown(grace=0)
    waits = stats["queue_wait_seconds"]
    observed = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("trio_tasks_job_queue_wait_seconds_sum{")
    ]
    # 0s, 30s behind the backup, and 0s from the delayed job's due time (not its submission).
    assert (waits["count"], waits["p50"], waits["max"]) == (3, 0.0, pytest.approx(30, abs=0.01))
    assert sum(observed) == pytest.approx(30, abs=0.01)
