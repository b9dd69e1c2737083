"""The HTTP API through the Quart test client: every endpoint, the seed's fields, every bad input.

Jobs are the demo registry's simulated work; the autojump clock makes their sleeps instant.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

import trio_tasks
from trio_tasks import Processor
from trio_tasks._config import build_config
from trio_tasks._errors import BrokerUnavailable
from trio_tasks.brokers._memory import MemoryBroker
from trio_tasks.http import create_app

RFC3339_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?\d+(\.\d+)?s$")
SEED_STATS = {"jobs_submitted", "jobs_completed", "jobs_failed", "workers_active", "queue_size"}
JOB_FIELDS = {
    "id",
    "type",
    "priority",
    "payload",
    "status",
    "attempts",
    "max_attempts",
    "timeout",
    "created_at",
    "run_at",
    "started_at",
    "completed_at",
    "worker_id",
    "result",
    "error",
    "progress",
    "meta",
    "errors",
}


def strict_registry() -> trio_tasks.TaskRegistry:
    """The demo job types without the demo's fallback: unknown types are refused."""
    registry = trio_tasks.TaskRegistry()
    for spec in trio_tasks.demo_registry():
        registry.register(spec.name, spec.handler)
    return registry


@asynccontextmanager
async def api(
    registry: trio_tasks.TaskRegistry | None = None, **settings: Any
) -> AsyncIterator[tuple[Processor, Any]]:
    """A processor running the demo registry (or ``registry``), and a test client of its HTTP
    API."""
    settings.setdefault("workers", 2)
    config = build_config(**settings)
    registry = registry or trio_tasks.demo_registry()
    async with trio_tasks.open_processor(registry, config=config) as processor:
        app = create_app(processor)
        # Unexpected exceptions fail the test with their traceback instead of becoming a 500.
        app.config["PROPAGATE_EXCEPTIONS"] = True
        yield processor, app.test_client()
        processor.shutdown(grace=0)


async def submit(client: Any, expect: int = 202, **body: Any) -> dict[str, Any]:
    response = await client.post("/jobs", json=body)
    answer: dict[str, Any] = await response.get_json()
    assert response.status_code == expect, answer
    return answer


async def job(client: Any, job_id: str, **query: str) -> dict[str, Any]:
    response = await client.get(f"/jobs/{job_id}", query_string=query)
    assert response.status_code == 200
    record: dict[str, Any] = await response.get_json()
    return record


# -- /health ---------------------------------------------------------------------------------


async def test_health_is_the_seeds_answer() -> None:
    async with api() as (_, client):
        response = await client.get("/health")
        assert response.status_code == 200
        assert response.content_type == "application/json"
        body = await response.get_json()
    assert set(body) == {"status", "timestamp"}
    assert body["status"] == "healthy"
    assert RFC3339_SECONDS.match(body["timestamp"])


async def test_health_and_submissions_answer_503_while_shutting_down(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with api(shutdown_timeout="1m") as (processor, client):
        running = await submit(client, type="email", payload={"duration": "10s"})
        await trio.sleep(1)
        processor.shutdown()
        response = await client.get("/health")
        body = await response.get_json()
        assert response.status_code == 503
        assert body["status"] == "shutting_down"
        assert "1m0s" in body["reason"]
        refused = await client.post("/jobs", query_string={"type": "email"})
        assert refused.status_code == 503
        assert "shutting down" in (await refused.get_json())["error"]
        # Lookups still work while the running job drains.
        assert (await job(client, running["job_id"]))["status"] == "running"


class _SickBroker(MemoryBroker):
    def health(self) -> str | None:
        return "redis unreachable: connection refused"


async def test_health_reports_an_unhealthy_broker() -> None:
    broker = _SickBroker(max_concurrency=10, result_ttl=60, result_max_jobs=10)
    async with trio_tasks.open_processor(trio_tasks.demo_registry(), broker=broker) as processor:
        client = create_app(processor).test_client()
        response = await client.get("/health")
        body = await response.get_json()
        processor.shutdown(grace=0)
    assert response.status_code == 503
    assert body["status"] == "unhealthy"
    assert body["reason"] == "redis unreachable: connection refused"


# -- POST /jobs ------------------------------------------------------------------------------


async def test_submit_the_seeds_way_with_query_parameters(autojump_clock: trio.abc.Clock) -> None:
    async with api() as (_, client):
        response = await client.post("/jobs", query_string={"type": "email", "priority": "high"})
        body = await response.get_json()
        assert response.status_code == 202
        assert body["status"] == "submitted"
        assert uuid.UUID(body["job_id"]).version == 4
        record = await job(client, body["job_id"], wait="10s")
    assert record["type"] == "email"
    assert record["priority"] == "high"
    assert record["status"] == "completed"
    assert record["result"]["simulated"] is True


async def test_submit_defaults_to_type_default_and_priority_normal() -> None:
    async with api() as (_, client):
        response = await client.post("/jobs")
        assert response.status_code == 202
        record = await job(client, (await response.get_json())["job_id"])
        # The seed treats an empty parameter as absent.
        response = await client.post("/jobs", query_string={"type": "", "priority": ""})
        assert response.status_code == 202
    assert (record["type"], record["priority"]) == ("default", "normal")


async def test_submit_a_json_body_with_every_field(autojump_clock: trio.abc.Clock) -> None:
    async with api() as (_, client):
        body = await submit(
            client,
            type="report",
            priority="urgent",
            payload={"month": "2024-01"},
            timeout="30s",
            retries=5,
            delay="1h",
            job_id="report-2024-01",
        )
        assert body["job_id"] == "report-2024-01"
        record = await job(client, "report-2024-01")
        later = await submit(client, type="sync", run_at=time.time() + 300 * 86400)
        later_record = await job(client, later["job_id"])
    assert set(record) == JOB_FIELDS
    assert record["payload"] == {"month": "2024-01"}
    assert record["priority"] == "urgent"
    assert record["timeout"] == 30.0
    assert record["max_attempts"] == 6
    assert record["status"] == "scheduled"
    assert later_record["status"] == "scheduled"
    assert later_record["run_at"] is not None


async def test_body_fields_win_over_query_parameters() -> None:
    async with api() as (_, client):
        response = await client.post(
            "/jobs",
            query_string={"type": "email", "priority": "low"},
            json={"priority": "high", "payload": {"x": 1}},
        )
        record = await job(client, (await response.get_json())["job_id"])
    assert (record["type"], record["priority"], record["payload"]) == ("email", "high", {"x": 1})


async def test_resubmitting_a_job_id_returns_the_existing_job() -> None:
    async with api() as (processor, client):
        first = await submit(client, type="email", job_id="welcome-42", payload={"n": 1})
        again = await submit(client, 200, type="email", job_id="welcome-42", payload={"n": 2})
        stats = await processor.stats()
        record = await job(client, "welcome-42")
    assert first["status"] == "submitted"
    assert again["status"] == "exists"
    assert again["job_id"] == "welcome-42"
    assert stats.submitted == 1
    assert record["payload"] == {"n": 1}


@pytest.mark.parametrize(
    ("query", "body", "status", "needle"),
    [
        ({"priority": "critical"}, None, 400, "expected one of low, normal, high, urgent"),
        ({"priority": "9"}, None, 400, "invalid priority"),
        ({"retries": "many"}, None, 400, "retries: expected an integer from 0 to 100"),
        ({"retries": "101"}, None, 400, "retries: expected an integer from 0 to 100"),
        ({"retries": "²"}, None, 400, "retries: expected an integer from 0 to 100"),
        ({"retries": "9" * 5000}, None, 400, "retries: expected an integer from 0 to 100"),
        ({"priority": "²"}, None, 400, "invalid priority"),
        ({"timeout": "169h"}, None, 400, "timeout: expected a duration > 0 and at most 7 days"),
        ({}, b'{"payload": {"n": ' + b"9" * 5000 + b"}}", 400, "malformed JSON: Exceeds"),
        ({}, b'{"timeout": ' + b"9" * 400 + b"}", 400, "timeout: expected a finite duration"),
        ({}, b'{"run_at": ' + b"9" * 400 + b"}", 400, "run_at: expected a time from"),
        ({}, b'{"job_id": "a\\ud800"}', 400, "job_id: expected"),
        ({}, b'{"job_id": "a\\u0000b"}', 400, "job_id: expected"),
        ({}, b'{"job_id": "' + b"x" * 201 + b'"}', 400, "job_id: expected"),
        ({}, b'{"type": "a\\nb"}', 400, "type: expected"),
        ({"timeout": "soon"}, None, 400, "timeout: expected a duration"),
        ({}, b'{"type": "email",', 400, "malformed JSON"),
        ({}, b"not json at all", 400, "malformed JSON: Expecting value at line 1 column 1"),
        ({}, b'{"type": NaN}', 400, "NaN is not valid JSON"),
        ({}, b"\xff\xfe\x00garbage", 400, "malformed JSON"),
        ({}, b"[" * 100_000 + b"]" * 100_000, 413, "request body too large"),
        ({}, b"[" * 5_000 + b"]" * 5_000, 400, "nested too deeply"),
        # Decodable, but 980 levels used to be admitted and then made GET /jobs answer 500.
        ({}, b'{"payload": {"a": ' + b"[" * 980 + b"]" * 980 + b"}}", 400, "at most 100 levels"),
        ({}, b'{"payload": {"a": ' + b"[" * 99 + b"]" * 99 + b"}}", 400, "at most 100 levels"),
        ({}, b'[{"type": "email"}]', 400, "must be a JSON object, got an array"),
        ({}, b'"email"', 400, "must be a JSON object, got a string"),
        ({}, b'{"type": 5}', 400, "type: expected a non-empty string of at most 200 printable"),
        ({}, b'{"payload": [1, 2]}', 400, "payload: expected a JSON object, got an array"),
        ({}, b'{"retries": true}', 400, "retries: expected an integer from 0 to 100, got True"),
        ({}, b'{"timeout": {"s": 1}}', 400, "timeout: expected a duration string or seconds"),
        ({}, b'{"timeout": 0}', 400, "timeout: expected a duration > 0"),
        ({}, b'{"delay": -5}', 400, "delay: expected a duration >= 0"),
        ({}, b'{"run_at": "tomorrow"}', 400, "run_at: expected an RFC 3339 timestamp"),
        ({}, b'{"delay": "1s", "run_at": 1}', 400, "either delay or run_at"),
        # Times no record can render (beyond year 9999) used to be admitted, and then every
        # GET /jobs/{id}, GET /jobs and DELETE touching the job answered 500.
        ({"delay": "1e308"}, None, 400, "delay: expected a duration of at most 366 days"),
        ({}, b'{"delay": 1e308}', 400, "delay: expected a duration of at most 366 days"),
        ({}, b'{"delay": "8785h"}', 400, "delay: expected a duration of at most"),
        ({}, b'{"run_at": "9999-12-31T23:59:59Z"}', 400, "run_at: expected a time from"),
        ({}, b'{"run_at": 1e308}', 400, "run_at: expected a time from 0001-01-01T00:00:00Z"),
        ({}, b'{"run_at": -1e308}', 400, "run_at: expected a time from 0001-01-01T00:00:00Z"),
        ({}, b'{"run_at": "9999-12-31T23:59:59-05:00"}', 400, "run_at: expected a time from"),
        ({}, b'{"job_id": "a/b"}', 400, "job_id: expected"),
        ({}, b'{"colour": "red"}', 400, "unknown field(s) colour"),
    ],
)
async def test_bad_submissions_get_a_4xx_with_a_message(
    query: dict[str, str], body: bytes | None, status: int, needle: str
) -> None:
    async with api(max_body_size=65_536) as (processor, client):
        response = await client.post("/jobs", query_string=query, data=body)
        answer = await response.get_json()
        stats = await processor.stats()
    assert response.status_code == status, answer
    assert response.content_type == "application/json"
    assert needle in answer["error"]
    assert stats.submitted == 0


async def test_the_extreme_run_at_times_are_admitted_and_answered() -> None:
    async with api() as (_, client):
        last = await submit(client, type="sync", run_at=time.time() + 365 * 86400)
        first = await submit(client, type="sync", run_at="0001-01-01T00:00:00Z")
        record = await (await client.get(f"/jobs/{last['job_id']}")).get_json()
        listing = await client.get("/jobs")
        first_record = await (await client.get(f"/jobs/{first['job_id']}?wait=5s")).get_json()
    assert record["status"] == "scheduled"
    assert listing.status_code == 200
    assert first_record["run_at"] == "0001-01-01T00:00:00Z"


async def test_a_body_nested_100_levels_is_admitted_and_listed() -> None:
    body = b'{"job_id": "deep", "payload": {"a": ' + b"[" * 98 + b"]" * 98 + b"}}"
    async with api() as (_, client):
        response = await client.post("/jobs", data=body)
        listing = await client.get("/jobs")
        record = await (await client.get("/jobs/deep")).get_json()
    assert response.status_code == 202
    assert listing.status_code == 200
    assert record["id"] == "deep"


async def test_unknown_type_lists_the_known_types_without_a_fallback() -> None:
    async with api(strict_registry()) as (_, client):
        response = await client.post("/jobs", query_string={"type": "fax"})
        answer = await response.get_json()
    assert response.status_code == 422
    assert answer["error"].startswith("unknown job type 'fax'; known types: backup, cleanup")
    assert answer["known_types"] == ["backup", "cleanup", "default", "email", "report", "sync"]


async def test_the_demo_runs_any_type_and_ignores_unknown_parameters() -> None:
    async with api() as (_, client):
        response = await client.post(
            "/jobs", query_string={"type": "benchmark", "priority": "high", "source": "cli"}
        )
        answer = await response.get_json()
        record = await job(client, answer["job_id"], wait="10s", colour="red")
        batch = await client.post("/jobs/batch?source=cli", json=[{"type": "concurrent"}])
        listing = await client.get("/jobs", query_string={"sort": "asc"})
    assert response.status_code == 202, answer
    assert (answer["type"], answer["priority"]) == ("benchmark", "high")
    assert record["status"] == "completed"
    assert record["result"]["type"] == "benchmark"
    assert batch.status_code == 202
    assert listing.status_code == 200


async def test_oversized_body_names_the_limit() -> None:
    async with api(max_body_size=2048) as (_, client):
        payload = {"blob": "x" * 4096}
        response = await client.post("/jobs", json={"type": "email", "payload": payload})
        answer = await response.get_json()
    assert response.status_code == 413
    assert answer == {"error": "request body too large: the limit is 2048 bytes"}


async def test_queue_full_is_refused_at_once_with_retry_after(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with api(workers=1, max_concurrency=2) as (processor, client):
        for _ in range(2):
            await submit(client, type="backup", payload={"duration": "1m"})
        response = await client.post("/jobs", query_string={"type": "backup"})
        answer = await response.get_json()
        stats = await processor.stats()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "queue full" in answer["error"]
    assert stats.submitted == 2


class _UnreachableBroker(MemoryBroker):
    async def enqueue(self, jobs: Any) -> Any:
        raise BrokerUnavailable("connection refused")


async def test_an_unreachable_broker_is_503_not_500() -> None:
    broker = _UnreachableBroker(max_concurrency=10, result_ttl=60, result_max_jobs=10)
    async with trio_tasks.open_processor(trio_tasks.demo_registry(), broker=broker) as processor:
        response = await create_app(processor).test_client().post("/jobs")
        answer = await response.get_json()
        processor.shutdown(grace=0)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert answer == {"error": "broker unavailable: connection refused"}


# -- POST /jobs/batch ------------------------------------------------------------------------


async def test_batch_admits_every_job_and_answers_every_id(autojump_clock: trio.abc.Clock) -> None:
    async with api() as (_, client):
        await submit(client, type="email", job_id="known")
        response = await client.post(
            "/jobs/batch",
            json=[
                {"type": "email", "priority": "low"},
                {"type": "sync", "priority": "urgent", "payload": {"a": 1}},
                {"type": "email", "job_id": "known"},
            ],
        )
        answer = await response.get_json()
        records = [await job(client, entry["job_id"], wait="10s") for entry in answer["jobs"]]
    assert response.status_code == 202
    assert answer["submitted"] == 2
    assert answer["existing"] == 1
    assert [e["status"] for e in answer["jobs"]] == ["submitted", "submitted", "exists"]
    assert answer["jobs"][2]["job_id"] == "known"
    assert [(r["type"], r["priority"]) for r in records] == [
        ("email", "low"),
        ("sync", "urgent"),
        ("email", "normal"),
    ]
    assert all(r["status"] == "completed" for r in records)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ([{"type": "email"}, {"type": "email", "priority": "asap"}], 400, "jobs[1]: invalid prio"),
        ([{"type": "email"}] * 1001, 400, "a batch holds at most 1000 jobs, got 1001"),
        ([{"type": "email"}, "email"], 400, "jobs[1]: a job must be a JSON object"),
        ([], 400, "non-empty JSON array"),
        ({"type": "email"}, 400, "non-empty JSON array of job objects, got an object"),
    ],
)
async def test_a_bad_batch_admits_nothing(body: Any, status: int, needle: str) -> None:
    async with api() as (processor, client):
        response = await client.post("/jobs/batch", json=body)
        answer = await response.get_json()
        stats = await processor.stats()
        listed = await processor.list_jobs()
    assert response.status_code == status, answer
    assert needle in answer["error"]
    assert stats.submitted == 0
    assert listed == []


async def test_a_batch_past_the_admission_bound_admits_nothing() -> None:
    async with api(max_concurrency=3) as (processor, client):
        response = await client.post("/jobs/batch", json=[{"type": "email"}] * 4)
        stats = await processor.stats()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert stats.submitted == 0


async def test_batch_refuses_malformed_json_and_an_unknown_type() -> None:
    async with api(strict_registry()) as (_, client):
        malformed = await client.post("/jobs/batch", data=b"[{")
        unknown = await client.post("/jobs/batch", json=[{"type": "email"}, {"type": "fax"}])
        empty = await client.post("/jobs/batch")
    assert malformed.status_code == 400
    assert "malformed JSON" in (await malformed.get_json())["error"]
    assert unknown.status_code == 422
    assert "unknown job type 'fax'" in (await unknown.get_json())["error"]
    assert empty.status_code == 400
    assert "the body is empty" in (await empty.get_json())["error"]


# -- GET /jobs/{id} and GET /jobs ------------------------------------------------------------


async def test_get_job_answers_the_whole_record(autojump_clock: trio.abc.Clock) -> None:
    async with api() as (_, client):
        body = await submit(client, type="cleanup", payload={"duration": "2s"})
        pending = await job(client, body["job_id"])
        done = await job(client, body["job_id"], wait="5s")
    assert set(pending) == JOB_FIELDS
    assert pending["status"] in {"pending", "running"}
    assert done["status"] == "completed"
    assert done["result"] == {"type": "cleanup", "simulated": True, "duration": "2s"}
    assert done["attempts"] == 1
    assert done["worker_id"].startswith("worker-")
    assert done["completed_at"].endswith("Z")


async def test_wait_answers_the_job_as_it_is_when_the_wait_ends(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with api() as (_, client):
        body = await submit(client, type="backup", payload={"duration": "1h"})
        start = trio.current_time()
        record = await job(client, body["job_id"], wait="3s")
        waited = trio.current_time() - start
    assert record["status"] == "running"
    assert waited == pytest.approx(3)


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ({"wait": "forever"}, "wait: expected a duration"),
        ({"wait": "2m"}, "wait: expected at most 1m0s"),
    ],
)
async def test_get_job_refuses_bad_parameters(query: dict[str, str], needle: str) -> None:
    async with api() as (_, client):
        body = await submit(client, type="email")
        response = await client.get(f"/jobs/{body['job_id']}", query_string=query)
        answer = await response.get_json()
    assert response.status_code == 400
    assert needle in answer["error"]


async def test_unknown_job_is_404_json() -> None:
    async with api() as (_, client):
        response = await client.get("/jobs/no-such-job")
        answer = await response.get_json()
    assert response.status_code == 404
    assert answer == {"error": "job 'no-such-job' not found"}


async def test_list_jobs_newest_first_with_filters(autojump_clock: trio.abc.Clock) -> None:
    async with api(workers=1) as (_, client):
        ids = [
            (await submit(client, type=job_type, payload={"duration": "1s"}))["job_id"]
            for job_type in ["email", "sync", "email", "email"]
        ]
        await job(client, ids[1], wait="10s")
        everything = await (await client.get("/jobs")).get_json()
        emails = await (await client.get("/jobs", query_string={"type": "email"})).get_json()
        done = await (await client.get("/jobs", query_string={"status": "completed"})).get_json()
        two = await (await client.get("/jobs", query_string={"limit": "2"})).get_json()
        blank = await (
            await client.get("/jobs", query_string={"status": "", "type": ""})
        ).get_json()
    assert [j["id"] for j in everything["jobs"]] == ids[::-1]
    assert everything["count"] == 4
    assert [j["id"] for j in emails["jobs"]] == [ids[3], ids[2], ids[0]]
    assert [j["id"] for j in done["jobs"]] == [ids[1], ids[0]]
    assert [j["id"] for j in two["jobs"]] == [ids[3], ids[2]]
    assert blank["count"] == 4


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ({"status": "lost"}, "invalid status 'lost'; expected one of pending, scheduled"),
        ({"limit": "0"}, "limit: expected an integer from 1 to 1000"),
        ({"limit": "1001"}, "limit: expected an integer from 1 to 1000"),
        ({"limit": "ten"}, "limit: expected an integer from 1 to 1000"),
        ({"limit": "9" * 5000}, "limit: expected an integer from 1 to 1000"),
    ],
)
async def test_list_jobs_refuses_bad_filters(query: dict[str, str], needle: str) -> None:
    async with api() as (_, client):
        response = await client.get("/jobs", query_string=query)
        answer = await response.get_json()
    assert response.status_code == 400
    assert needle in answer["error"]


# -- DELETE /jobs/{id} -----------------------------------------------------------------------


async def test_cancel_a_queued_job(autojump_clock: trio.abc.Clock) -> None:
    async with api(workers=1) as (_, client):
        await submit(client, type="backup", payload={"duration": "1m"})
        queued = await submit(client, type="email")
        response = await client.delete(f"/jobs/{queued['job_id']}")
        answer = await response.get_json()
        record = await job(client, queued["job_id"])
    assert response.status_code == 200
    assert answer["status"] == "cancelled"
    assert answer["job"]["status"] == "cancelled"
    assert record["status"] == "cancelled"


async def test_cancel_a_running_job(autojump_clock: trio.abc.Clock) -> None:
    async with api(workers=1) as (_, client):
        running = await submit(client, type="backup", payload={"duration": "1h"})
        await trio.sleep(1)
        response = await client.delete(f"/jobs/{running['job_id']}")
        answer = await response.get_json()
        record = await job(client, running["job_id"], wait="5s")
    assert response.status_code == 202
    assert answer["status"] == "cancelling"
    assert record["status"] == "cancelled"
    assert record["attempts"] == 1


async def test_cancel_a_finished_job_is_409_and_an_unknown_one_404(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with api() as (_, client):
        body = await submit(client, type="email")
        await job(client, body["job_id"], wait="10s")
        finished = await client.delete(f"/jobs/{body['job_id']}")
        unknown = await client.delete("/jobs/nope")
        finished_answer = await finished.get_json()
    assert finished.status_code == 409
    assert finished_answer["error"] == f"job {body['job_id']!r} is already completed"
    assert finished_answer["status"] == "completed"
    assert unknown.status_code == 404


# -- /stats, /workers, /metrics --------------------------------------------------------------


async def test_stats_answers_the_seeds_fields_and_more(autojump_clock: trio.abc.Clock) -> None:
    async with api(workers=3, retry_attempts=0) as (_, client):
        ok = await submit(client, type="email")
        bad = await submit(client, type="email", payload={"fail": True})
        await submit(client, type="report", priority="low", delay="2h")
        await job(client, ok["job_id"], wait="10s")
        await job(client, bad["job_id"], wait="10s")
        await trio.sleep(3723 - trio.current_time() % 1)
        response = await client.get("/stats")
        stats = await response.get_json()
    assert response.status_code == 200
    assert set(stats) >= SEED_STATS
    assert stats["jobs_submitted"] == 3
    assert stats["jobs_completed"] == 1
    assert stats["jobs_failed"] == 1
    assert stats["workers_active"] == 3
    assert stats["queue_size"] == 0
    assert GO_DURATION.match(stats["uptime"])
    assert stats["uptime"].startswith("1h2m")
    assert stats["jobs_scheduled"] == 1
    assert stats["queue_sizes"] == {"urgent": 0, "high": 0, "normal": 0, "low": 0}
    assert stats["run_time_seconds"]["count"] == 2
    assert stats["workers_busy"] == 0


async def test_stats_counts_queued_jobs_per_priority(autojump_clock: trio.abc.Clock) -> None:
    async with api(workers=1) as (_, client):
        await submit(client, type="backup", payload={"duration": "1h"})
        await trio.sleep(1)
        for priority in ["low", "urgent", "urgent"]:
            await submit(client, type="email", priority=priority)
        stats = await (await client.get("/stats")).get_json()
    assert stats["queue_size"] == 3
    assert stats["queue_sizes"] == {"urgent": 2, "high": 0, "normal": 0, "low": 1}
    assert stats["jobs_running"] == 1
    assert stats["workers_busy"] == 1


async def test_workers_answers_the_count_and_each_worker(autojump_clock: trio.abc.Clock) -> None:
    async with api(workers=2) as (_, client):
        body = await submit(client, type="backup", payload={"duration": "1h"})
        await trio.sleep(1)
        response = await client.get("/workers")
        answer = await response.get_json()
    assert response.status_code == 200
    assert answer["workers"] == 2
    assert (answer["busy"], answer["idle"]) == (1, 1)
    busy = [w for w in answer["details"] if w["state"] == "busy"]
    assert busy[0]["current_job"] == body["job_id"]
    assert {w["id"] for w in answer["details"]} == {"worker-1", "worker-2"}
    assert set(answer["details"][0]) == {
        "id",
        "state",
        "current_job",
        "processed",
        "succeeded",
        "failed",
    }


async def test_metrics_in_prometheus_text_format(autojump_clock: trio.abc.Clock) -> None:
    async with api(workers=1, retry_attempts=1) as (_, client):
        flaky = await submit(client, type="sync", priority="high", payload={"fail": 1})
        await job(client, flaky["job_id"], wait="30s")
        await submit(client, type="backup", payload={"duration": "1h"})
        await submit(client, type="email", priority="urgent")
        await trio.sleep(1)
        response = await client.get("/metrics")
        text = (await response.get_data()).decode()
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    lines = set(text.splitlines())
    assert 'trio_tasks_jobs_submitted_total{priority="high",type="sync"} 1.0' in lines
    assert 'trio_tasks_jobs_retried_total{priority="high",type="sync"} 1.0' in lines
    assert 'trio_tasks_jobs_completed_total{priority="high",type="sync"} 1.0' in lines
    assert 'trio_tasks_queue_size{priority="urgent"} 1.0' in lines
    assert 'trio_tasks_queue_size{priority="low"} 0.0' in lines
    assert "trio_tasks_jobs_running 1.0" in lines
    assert "trio_tasks_workers_busy 1.0" in lines
    assert "trio_tasks_workers 1.0" in lines
    assert 'trio_tasks_job_duration_seconds_count{outcome="completed",type="sync"} 1.0' in lines
    assert 'trio_tasks_job_duration_seconds_count{outcome="retried",type="sync"} 1.0' in lines
    assert any(line.startswith("trio_tasks_job_queue_wait_seconds_bucket{") for line in lines)


async def test_metrics_of_two_apps_do_not_collide() -> None:
    async with api() as (processor, client):
        other = create_app(processor).test_client()
        await submit(client, type="email")
        first = (await (await client.get("/metrics")).get_data()).decode()
        second = (await (await other.get("/metrics")).get_data()).decode()
    assert 'trio_tasks_jobs_submitted_total{priority="normal",type="email"} 1.0' in first
    assert 'trio_tasks_jobs_submitted_total{priority="normal",type="email"} 1.0' in second


# -- errors outside the routes ---------------------------------------------------------------


async def test_unknown_route_and_wrong_method_answer_json() -> None:
    async with api() as (_, client):
        missing = await client.get("/nope")
        wrong = await client.put("/health")
        missing_answer = await missing.get_json()
        wrong_answer = await wrong.get_json()
    assert missing.status_code == 404
    assert missing_answer == {"error": "not found: no such endpoint"}
    assert wrong.status_code == 405
    assert wrong_answer == {"error": "method not allowed"}
    assert "GET" in wrong.headers["Allow"]


async def test_a_bug_is_a_json_500_without_details() -> None:
    async with trio_tasks.open_processor(trio_tasks.demo_registry()) as processor:
        app = create_app(processor)

        @app.get("/boom")
        async def boom() -> str:
            raise RuntimeError("secret internals")

        response = await app.test_client().get("/boom")
        answer = await response.get_json()
        processor.shutdown(grace=0)
    assert response.status_code == 500
    assert answer == {"error": "internal server error"}


async def test_index_lists_endpoints_and_job_types() -> None:
    async with api() as (_, client):
        answer = await (await client.get("/")).get_json()
    assert "POST /jobs" in answer["endpoints"]
    assert answer["job_types"] == ["backup", "cleanup", "default", "email", "report", "sync"]
