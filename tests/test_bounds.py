"""Bounds that keep one client from taking a node: finished jobs kept by bytes, body decoding
counted before it allocates, secrets masked in URLs."""

from __future__ import annotations

import uuid

import attrs
import pytest
import trio

import trio_tasks
from trio_tasks._config import build_config
from trio_tasks._job import snapshot
from trio_tasks._request import new_job_id
from trio_tasks._secrets import redact_url, url_secrets
from trio_tasks.brokers._retention import RECORD_OVERHEAD, record_size
from trio_tasks.http._input import MAX_JSON_VALUES, parse_json

KIB = 1024


async def test_finished_jobs_are_kept_within_result_max_bytes(
    autojump_clock: trio.abc.Clock,
) -> None:
    tasks = trio_tasks.TaskRegistry()

    @tasks.task("echo")
    async def echo(ctx: trio_tasks.JobContext) -> str:
        return "r" * 10 * KIB

    config = build_config(workers=1, result_max_bytes=100 * KIB, result_max_jobs=1000)
    async with trio_tasks.open_processor(tasks, config=config) as processor:
        ids = []
        for n in range(20):
            job = await processor.submit("echo", {"blob": "p" * 10 * KIB}, job_id=f"job-{n}")
            await processor.wait(job.id)
            ids.append(job.id)
        kept = [job.id for job in await processor.list_jobs(limit=100)]
    # Each job holds ~20 KiB (payload and result): the newest five fit in 100 KiB.
    assert kept == ids[::-1][: len(kept)]
    assert 3 <= len(kept) <= 5


def test_a_records_size_counts_payload_result_and_error() -> None:
    job = trio_tasks.Job(
        id="x",
        type="t",
        priority=trio_tasks.Priority.NORMAL,
        payload={"a": "b" * 100},
        max_attempts=1,
        timeout=1.0,
        created_at=0.0,
    )
    assert record_size(job) == RECORD_OVERHEAD + len('{"a":"' + "b" * 100 + '"}')
    # Values orjson refuses are counted by the standard encoder.
    job.result = {1: 2**80}
    job.error = trio_tasks.JobError("boom", "ValueError")
    assert record_size(job) == (
        RECORD_OVERHEAD + len('{"a":"' + "b" * 100 + '"}') + len('{"1": ' + str(2**80) + "}") + 4
    )


def test_a_snapshot_copies_every_field() -> None:
    values: dict[str, object] = {
        "id": "x",
        "type": "t",
        "priority": trio_tasks.Priority.HIGH,
        "payload": {"p": 1},
        "max_attempts": 3,
        "timeout": 2.0,
        "created_at": 1.0,
        "status": trio_tasks.JobStatus.FAILED,
        "attempts": 2,
        "run_at": 3.0,
        "started_at": 4.0,
        "completed_at": 5.0,
        "worker_id": "w",
        "result": {"r": 1},
        "error": trio_tasks.JobError("m", "T"),
        "progress": 0.5,
        "meta": {"k": "v"},
        "errors": [{"attempt": 1}],
    }
    assert set(values) == {f.name for f in attrs.fields(trio_tasks.Job)}
    job = trio_tasks.Job(**values)  # type: ignore[arg-type]
    copy = snapshot(job)
    assert copy is not job
    assert {name: getattr(copy, name) for name in values} == values
    job.status = trio_tasks.JobStatus.PENDING
    assert copy.status is trio_tasks.JobStatus.FAILED


@pytest.mark.parametrize(
    "body",
    [
        b'{"payload": {"a": [' + b",".join([b"[]"] * MAX_JSON_VALUES) + b"]}}",
        b"[" + b",".join([b'"a\\\\"'] * MAX_JSON_VALUES) + b"]",
    ],
)
def test_a_body_of_too_many_values_is_refused_before_decoding(body: bytes) -> None:
    with pytest.raises(trio_tasks.InvalidValue, match="more than 50000 JSON values"):
        parse_json(body)


def test_commas_inside_strings_are_not_values() -> None:
    body = b'{"payload": {"csv": "' + b"a," * 100_000 + b'", "q": "\\",[{"}}'
    assert parse_json(body)["payload"]["q"] == '",[{'


@pytest.mark.parametrize(
    ("url", "shown", "secrets"),
    [
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0", ["s3cret"]),
        (
            "redis://u:p%40ss@h/0?password=abc&namespace=n",
            "redis://u:***@h/0?password=***&namespace=n",
            ["p%40ss", "abc", "p@ss"],
        ),
        (
            "redis+sentinel://:pw@a:1,b:2/m?sentinel_password=zz",
            "redis+sentinel://:***@a:1,b:2/m?sentinel_password=***",
            ["pw", "zz"],
        ),
        ("memory://", "memory://", []),
        ("unix:///tmp/r.sock?password=qq", "unix:///tmp/r.sock?password=***", ["qq"]),
    ],
)
def test_broker_urls_are_shown_without_their_secrets(
    url: str, shown: str, secrets: list[str]
) -> None:
    assert redact_url(url) == shown
    assert url_secrets(url) == secrets


def test_job_ids_are_uuid4_strings() -> None:
    ids = {new_job_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
    # Every random bit varies (no digit is stuck but the version's).
    for position in range(36):
        seen = {text[position] for text in ids}
        assert len(seen) == (1 if position in (8, 13, 14, 18, 23) else 4 if position == 19 else 16)
