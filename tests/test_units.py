"""Pure units: durations, priorities, job requests, job records, backoff, registry, config."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import attrs
import pytest

from trio_tasks import (
    Config,
    InvalidValue,
    Job,
    JobError,
    JobRequest,
    JobStatus,
    Priority,
    TaskRegistry,
    UnknownJobType,
    format_duration,
    parse_duration,
)
from trio_tasks._backoff import backoff_cap, backoff_delay
from trio_tasks._config import build_config
from trio_tasks._job import JOB_SCHEMA_VERSION, job_from_record, job_to_json, job_to_record
from trio_tasks._request import new_job_id

# -- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300ms", 0.3),
        ("1.5h", 5400.0),
        ("2h45m", 9900.0),
        ("1h30m45s", 5445.0),
        ("5m", 300.0),
        ("1s", 1.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("1m30.5s", 90.5),
        ("250us", 250e-6),
        ("250µs", 250e-6),
        ("7ns", 7e-9),
        ("0", 0.0),
        ("0s", 0.0),
        ("+3s", 3.0),
        ("42", 42.0),
        ("2.5", 2.5),
        ("  10s  ", 10.0),
        (42, 42.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_duration_accepts_go_syntax_and_plain_seconds(
    text: str | float, seconds: float
) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "got an empty value"),
        ("   ", "got an empty value"),
        ("abc", "got 'abc'"),
        ("5x", "got '5x'"),
        ("1h 30m", "got '1h 30m'"),
        ("h", "got 'h'"),
        ("1.5.5s", "got '1.5.5s'"),
        ("-1s", "expected a duration >= 0, got '-1s'"),
        (-2, "expected a duration >= 0, got -2"),
        ("nan", "expected a finite duration"),
        ("inf", "expected a finite duration"),
        (float("inf"), "expected a finite duration"),
        (True, "got True"),
        ([1], "got [1]"),
    ],
)
def test_parse_duration_refuses_malformed_values_naming_them(value: Any, fragment: str) -> None:
    with pytest.raises(InvalidValue) as info:
        parse_duration(value, name="WORKER_JOB_TIMEOUT")
    message = str(info.value)
    assert message.startswith("WORKER_JOB_TIMEOUT: ")
    assert fragment in message
    assert "\n" not in message


def test_parse_duration_error_says_what_is_expected() -> None:
    with pytest.raises(InvalidValue, match=r"expected a duration like 300ms, 1\.5h, 2h45m"):
        parse_duration("soon", name="delay")


def test_invalid_value_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="delay"):
        parse_duration("soon", name="delay")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (5445, "1h30m45s"),
        (1.5, "1.5s"),
        (0.3, "300ms"),
        (5, "5s"),
        (60, "1m0s"),
        (300, "5m0s"),
        (3600, "1h0m0s"),
        (5400, "1h30m0s"),
        (9900, "2h45m0s"),
        (90.5, "1m30.5s"),
        (0.0015, "1.5ms"),
        (1.5e-6, "1.5µs"),
        (1e-9, "1ns"),
        (100 * 3600, "100h0m0s"),
        (-1.5, "-1.5s"),
    ],
)
def test_format_duration_matches_go_duration_string(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.0, 0.3, 1.5, 59.25, 90.5, 5445.0, 9900.0, 123456.789])
def test_formatted_durations_parse_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-9)


# -- priorities and statuses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("low", Priority.LOW),
        ("NORMAL", Priority.NORMAL),
        ("High", Priority.HIGH),
        (" urgent ", Priority.URGENT),
        ("uRgEnT", Priority.URGENT),
        (1, Priority.LOW),
        (2, Priority.NORMAL),
        (3, Priority.HIGH),
        (4, Priority.URGENT),
        ("1", Priority.LOW),
        ("4", Priority.URGENT),
        (Priority.HIGH, Priority.HIGH),
    ],
)
def test_priority_parse_accepts_names_in_any_case_and_numbers(
    value: object, expected: Priority
) -> None:
    assert Priority.parse(value) is expected


@pytest.mark.parametrize(
    "value", [0, 5, -1, "0", "5", "critical", "", "hi", True, None, 2.0, "2.0"]
)
def test_priority_parse_refuses_anything_else_listing_valid_values(value: object) -> None:
    with pytest.raises(InvalidValue) as info:
        Priority.parse(value)
    message = str(info.value)
    assert repr(value) in message
    assert "low, normal, high, urgent" in message
    assert "1-4" in message


def test_priorities_order_and_render_lowercase() -> None:
    assert Priority.LOW < Priority.NORMAL < Priority.HIGH < Priority.URGENT
    assert [int(p) for p in Priority] == [1, 2, 3, 4]
    assert [str(p) for p in Priority] == ["low", "normal", "high", "urgent"]


def test_job_status_final_states_and_parse() -> None:
    final = {s for s in JobStatus if s.is_final}
    assert final == {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    assert JobStatus.parse(" Running ") is JobStatus.RUNNING
    with pytest.raises(InvalidValue, match="pending, scheduled, running, completed, failed"):
        JobStatus.parse("done")


# -- job requests ----------------------------------------------------------------------------


def test_job_request_defaults() -> None:
    request = JobRequest.build()
    assert request == JobRequest(type="default", payload={}, priority=Priority.NORMAL)
    assert (request.timeout, request.retries, request.delay, request.run_at) == (None,) * 4
    assert request.job_id is None


def test_job_request_parses_every_field() -> None:
    request = JobRequest.build(
        type="email",
        payload={"to": "x@example.org"},
        priority="HIGH",
        timeout="1m30s",
        retries="2",
        delay="300ms",
        job_id="order-42",
    )
    assert request.type == "email"
    assert request.payload == {"to": "x@example.org"}
    assert request.priority is Priority.HIGH
    assert request.timeout == 90.0
    assert request.retries == 2
    assert request.delay == pytest.approx(0.3)
    assert request.job_id == "order-42"


def test_job_request_run_at_accepts_rfc3339_and_posix_seconds() -> None:
    # In the past (runs now): run_at is at most 366 days ahead.
    assert JobRequest.build(run_at="2025-01-01T00:00:00Z").run_at == 1735689600.0
    assert JobRequest.build(run_at="2025-01-01T01:00:00+01:00").run_at == 1735689600.0
    assert JobRequest.build(run_at="2025-01-01T00:00:00").run_at == 1735689600.0  # naive: UTC
    assert JobRequest.build(run_at=1735689600).run_at == 1735689600.0
    assert JobRequest.build(run_at=1.5).run_at == 1.5


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("type", "", "type: expected a non-empty string"),
        ("type", "  ", "type: expected a non-empty string"),
        (
            "type",
            5,
            "type: expected a non-empty string of at most 200 printable characters, "
            "got a number (5)",
        ),
        (
            "type",
            None,
            "type: expected a non-empty string of at most 200 printable characters, got null",
        ),
        ("type", "a\tb", "type: expected a non-empty string of at most 200 printable"),
        ("payload", [1, 2], "payload: expected a JSON object, got an array"),
        ("payload", "text", "payload: expected a JSON object, got a string ('text')"),
        ("payload", 3, "payload: expected a JSON object, got a number (3)"),
        ("priority", "bogus", "invalid priority 'bogus'"),
        ("priority", 9, "invalid priority 9"),
        ("timeout", "abc", "timeout: expected a duration like"),
        ("timeout", 0, "timeout: expected a duration > 0 and at most 7 days (168h), got 0"),
        ("timeout", "0s", "timeout: expected a duration > 0 and at most 7 days (168h), got '0s'"),
        ("timeout", "169h", "timeout: expected a duration > 0 and at most 7 days"),
        ("timeout", -1, "timeout: expected a duration >= 0"),
        ("timeout", [5], "timeout: expected a duration string or seconds, got an array"),
        ("timeout", True, "timeout: expected a duration string or seconds, got a boolean"),
        ("retries", -1, "retries: expected an integer from 0 to 100, got -1"),
        ("retries", 101, "retries: expected an integer from 0 to 100, got 101"),
        ("retries", "three", "retries: expected an integer from 0 to 100, got 'three'"),
        ("retries", 1.5, "retries: expected an integer from 0 to 100, got 1.5"),
        ("retries", True, "retries: expected an integer from 0 to 100, got True"),
        ("delay", "8785h", "delay: expected a duration of at most 366 days"),
        ("delay", "later", "delay: expected a duration like"),
        ("delay", "-5s", "delay: expected a duration >= 0"),
        ("delay", {}, "delay: expected a duration string or seconds, got an object"),
        ("run_at", "tomorrow", "run_at: expected an RFC 3339 timestamp"),
        ("run_at", True, "run_at: expected an RFC 3339 timestamp or POSIX seconds, got True"),
        ("run_at", [1], "run_at: expected an RFC 3339 timestamp or POSIX seconds"),
        ("job_id", "", "job_id: expected a non-empty string"),
        (
            "job_id",
            "a/b",
            "job_id: expected a non-empty string of at most 200 printable characters",
        ),
        ("job_id", "a\x00b", "job_id: expected a non-empty string of at most 200 printable"),
        ("job_id", "a\ud800", "job_id: expected a non-empty string of at most 200 printable"),
        ("job_id", "x" * 201, "job_id: expected a non-empty string of at most 200"),
        ("job_id", 42, "job_id: expected a non-empty string"),
    ],
)
def test_job_request_refuses_bad_fields_naming_the_field(
    field: str, value: object, fragment: str
) -> None:
    with pytest.raises(InvalidValue) as info:
        JobRequest.build(**{field: value})
    assert fragment in str(info.value)


def test_job_request_refuses_delay_and_run_at_together() -> None:
    with pytest.raises(InvalidValue, match="either delay or run_at, not both"):
        JobRequest.build(delay=5, run_at=1893456000)


def test_job_request_from_json_validates_the_object() -> None:
    request = JobRequest.from_json({"type": "email", "priority": 4, "payload": {"a": 1}})
    assert (request.type, request.priority, request.payload) == ("email", Priority.URGENT, {"a": 1})
    with pytest.raises(InvalidValue, match="a job must be a JSON object, got an empty array"):
        JobRequest.from_json([])
    with pytest.raises(InvalidValue, match=r"unknown field\(s\) colour, size; expected delay"):
        JobRequest.from_json({"type": "email", "size": 1, "colour": "red"})
    with pytest.raises(InvalidValue, match="retries: expected an integer"):
        JobRequest.from_json({"retries": "many"})


# -- job records -----------------------------------------------------------------------------


def _full_job() -> Job:
    return Job(
        id="5b0f6c1e-2f0a-4c55-9d4e-3b1a2f9e8c7d",
        type="email",
        priority=Priority.HIGH,
        payload={"to": "x@example.org", "n": [1, 2.5, None]},
        max_attempts=4,
        timeout=30.0,
        created_at=1_700_000_000.25,
        status=JobStatus.FAILED,
        attempts=4,
        run_at=1_700_000_010.5,
        started_at=1_700_000_011.0,
        completed_at=1_700_000_041.0,
        worker_id="worker-3",
        result={"sent": False},
        error=JobError("timed out after 30s", "TimeoutError"),
        progress=0.75,
    )


def test_job_record_round_trips_through_json() -> None:
    job = _full_job()
    record = json.loads(json.dumps(job_to_record(job)))
    assert record["v"] == JOB_SCHEMA_VERSION
    back = job_from_record(record)
    assert attrs.asdict(back, recurse=False) == attrs.asdict(job, recurse=False)
    assert back.priority is Priority.HIGH
    assert back.status is JobStatus.FAILED
    assert back.error == JobError("timed out after 30s", "TimeoutError")


def test_job_record_round_trips_a_fresh_job() -> None:
    job = Job(
        id="j", type="t", priority=Priority.LOW, payload={}, max_attempts=1, timeout=1.0,
        created_at=0.0,
    )  # fmt: skip
    back = job_from_record(json.loads(json.dumps(job_to_record(job))))
    assert attrs.asdict(back, recurse=False) == attrs.asdict(job, recurse=False)
    assert back.status is JobStatus.PENDING
    assert back.error is None


def test_job_from_record_refuses_other_versions_and_malformed_records() -> None:
    record = job_to_record(_full_job())
    with pytest.raises(InvalidValue, match="schema 99 is not 1"):
        job_from_record({**record, "v": 99})
    with pytest.raises(InvalidValue, match="malformed job record"):
        job_from_record({k: v for k, v in record.items() if k != "payload"})
    with pytest.raises(InvalidValue, match="malformed job record"):
        job_from_record({**record, "priority": 7})
    with pytest.raises(InvalidValue, match="malformed job record"):
        job_from_record({**record, "status": "lost"})


def test_job_to_json_uses_names_and_rfc3339_times() -> None:
    data = job_to_json(_full_job())
    assert data["priority"] == "high"
    assert data["status"] == "failed"
    assert data["created_at"] == "2023-11-14T22:13:20.250000Z"
    assert data["run_at"] == "2023-11-14T22:13:30.500000Z"
    assert data["error"] == {"message": "timed out after 30s", "type": "TimeoutError"}
    json.dumps(data, allow_nan=False)


# -- backoff ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry", "base", "cap", "expected"),
    [
        (1, 1.0, 300.0, 1.0),
        (2, 1.0, 300.0, 2.0),
        (3, 1.0, 300.0, 4.0),
        (9, 1.0, 300.0, 256.0),
        (10, 1.0, 300.0, 300.0),
        (1000, 1.0, 300.0, 300.0),
        (3, 0.5, 1.5, 1.5),
        (1, 0.0, 10.0, 0.0),
        (5, 2.0, 2.0, 2.0),
    ],
)
def test_backoff_cap_doubles_from_the_base_up_to_the_cap(
    retry: int, base: float, cap: float, expected: float
) -> None:
    assert backoff_cap(retry, base, cap) == expected


def test_backoff_delay_is_full_jitter_within_bounds() -> None:
    rng = random.Random(1234)
    for retry in range(1, 12):
        cap = backoff_cap(retry, 1.0, 60.0)
        samples = [backoff_delay(retry, 1.0, 60.0, rng) for _ in range(400)]
        assert all(0.0 <= s <= cap for s in samples)
        # Full jitter: the whole range is used, not just values near the cap.
        assert min(samples) < 0.1 * cap
        assert max(samples) > 0.9 * cap


def test_backoff_delay_is_reproducible_with_a_seeded_rng() -> None:
    first = [backoff_delay(n, 1.0, 300.0, random.Random(7)) for n in range(1, 6)]
    second = [backoff_delay(n, 1.0, 300.0, random.Random(7)) for n in range(1, 6)]
    assert first == second


# -- registry --------------------------------------------------------------------------------


async def _noop(ctx: Any) -> None:
    return None


def test_registry_registers_async_and_sync_handlers_with_overrides() -> None:
    tasks = TaskRegistry()

    @tasks.task("email", timeout="30s", retries=5)
    async def send_email(ctx: Any) -> None:
        return None

    @tasks.task()
    def checksum(ctx: Any) -> int:
        return 0

    assert tasks.names() == ["checksum", "email"]
    assert "email" in tasks
    assert "nope" not in tasks
    assert len(tasks) == 2
    email = tasks.get("email")
    assert (email.handler, email.is_async, email.timeout, email.retries) == (
        send_email,
        True,
        30.0,
        5,
    )
    sync = tasks.get("checksum")
    assert (sync.is_async, sync.timeout, sync.retries) == (False, None, None)
    assert {spec.name for spec in tasks} == {"email", "checksum"}


def test_registry_refuses_duplicate_names() -> None:
    tasks = TaskRegistry()
    tasks.register("email", _noop)
    with pytest.raises(InvalidValue, match="job type 'email' is already registered"):
        tasks.register("email", _noop)
    assert tasks.get("email").handler is _noop


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"timeout": "abc"}, "timeout of job type 'x': expected a duration like"),
        ({"timeout": 0}, "timeout of job type 'x' must be > 0, got 0"),
        ({"timeout": "0s"}, "timeout of job type 'x' must be > 0, got '0s'"),
        ({"timeout": -5}, "timeout of job type 'x': expected a duration >= 0"),
        ({"retries": -1}, "retries of job type 'x' must be an int >= 0, got -1"),
        ({"retries": True}, "retries of job type 'x' must be an int >= 0, got True"),
        ({"retries": 2.5}, "retries of job type 'x' must be an int >= 0, got 2.5"),
    ],
)
def test_registry_refuses_bad_timeouts_and_retries(kwargs: dict[str, Any], fragment: str) -> None:
    tasks = TaskRegistry()
    with pytest.raises(InvalidValue) as info:
        tasks.register("x", _noop, **kwargs)
    assert fragment in str(info.value)
    assert "x" not in tasks


def test_registry_refuses_bad_names_and_handlers() -> None:
    tasks = TaskRegistry()
    with pytest.raises(InvalidValue, match="non-empty string"):
        tasks.register("", _noop)
    with pytest.raises(InvalidValue, match="handler for 'x' must be callable"):
        tasks.register("x", "not a function")  # type: ignore[arg-type]
    assert len(tasks) == 0


def test_registry_unknown_type_lists_known_types() -> None:
    tasks = TaskRegistry()
    tasks.register("report", _noop)
    tasks.register("email", _noop)
    with pytest.raises(UnknownJobType) as info:
        tasks.get("sms")
    assert info.value.job_type == "sms"
    assert info.value.known == ["email", "report"]
    assert str(info.value) == "unknown job type 'sms'; known types: email, report"
    with pytest.raises(UnknownJobType, match=r"known types: \(none registered\)"):
        TaskRegistry().get("sms")


# -- config ----------------------------------------------------------------------------------


def test_config_defaults_match_the_seed() -> None:
    config = Config()
    assert (config.server_host, config.server_port) == ("0.0.0.0", 8080)
    assert (config.workers, config.max_concurrency) == (10, 100_000)  # the seed: 100
    assert (config.job_timeout, config.retry_attempts) == (300.0, 3)
    assert (config.retry_delay, config.retry_max_delay) == (1.0, 300.0)
    assert config.shutdown_timeout == 30.0
    assert (config.log_level, config.log_format, config.broker_url) == ("info", "json", "memory://")
    assert (config.result_ttl, config.result_max_jobs) == (3600.0, 10_000)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"server_port": 70000}, "expected 0-65535, got 70000"),
        ({"workers": -1}, "expected an integer >= 0, got -1"),
        ({"max_concurrency": 0}, "expected >= 1, got 0"),
        ({"job_timeout": 0.0}, "expected a duration > 0 and at most 168h0m0s, got 0.0"),
        ({"retry_attempts": -1}, "expected 0-100, got -1"),
        ({"retry_delay": -1.0}, "expected a duration >= 0, got -1.0"),
        ({"retry_delay": 10.0, "retry_max_delay": 5.0}, "expected a duration >= retry_delay (10s)"),
        ({"shutdown_timeout": -1.0}, "expected >= 0, got -1.0"),
        ({"log_level": "loud"}, "expected debug|info|warning|error|critical, got 'loud'"),
        ({"log_format": "xml"}, "expected json|console, got 'xml'"),
        ({"broker_url": "http://x"}, "expected memory://, sqlite:///path.db, redis://host:port/db"),
        ({"result_ttl": 0.0}, "expected a duration > 0, got 0.0"),
        ({"result_max_jobs": 0}, "expected >= 1, got 0"),
    ],
)
def test_config_refuses_bad_values(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidValue) as info:
        Config(**kwargs)
    assert fragment in str(info.value)


def test_config_from_env_reads_the_seed_variables() -> None:
    config = Config.from_env(
        {
            "SERVER_PORT": "9090",
            "WORKER_NUM_WORKERS": "4",
            "WORKER_MAX_CONCURRENCY": "50",
            "WORKER_JOB_TIMEOUT": "1m30s",
            "WORKER_RETRY_ATTEMPTS": "5",
            "WORKER_RETRY_DELAY": "250ms",
            "WORKER_RETRY_MAX_DELAY": "1.5h",
            "SHUTDOWN_TIMEOUT": "10",
            "LOG_LEVEL": "DEBUG",
            "LOG_FORMAT": "console",
            "BROKER_URL": "memory://",
            "RESULT_TTL": "2h",
            "RESULT_MAX_JOBS": "7",
            "SERVER_HOST": "",  # empty means unset
            "UNRELATED": "ignored",
        }
    )
    assert config.server_port == 9090
    assert config.server_host == "0.0.0.0"
    assert (config.workers, config.max_concurrency) == (4, 50)
    assert (config.job_timeout, config.retry_attempts) == (90.0, 5)
    assert (config.retry_delay, config.retry_max_delay) == (0.25, 5400.0)
    assert config.shutdown_timeout == 10.0
    assert (config.log_level, config.log_format) == ("debug", "console")
    assert (config.result_ttl, config.result_max_jobs) == (7200.0, 7)


def test_config_from_env_overrides_win() -> None:
    config = Config.from_env({"WORKER_NUM_WORKERS": "4"}, {"workers": 8, "server_port": None})
    assert config.workers == 8
    assert config.server_port == 8080


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"WORKER_NUM_WORKERS": "ten"},
            "WORKER_NUM_WORKERS='ten': expected an integer, got 'ten'",
        ),
        (
            {"WORKER_JOB_TIMEOUT": "5 minutes"},
            "WORKER_JOB_TIMEOUT='5 minutes': expected a duration like 300ms, 1.5h, 2h45m or a "
            "number of seconds, got '5 minutes'",
        ),
        (
            {"WORKER_MAX_CONCURRENCY": "0"},
            "WORKER_MAX_CONCURRENCY='0': expected >= 1, got 0",
        ),
        (
            {"WORKER_RETRY_DELAY": "-1s"},
            "WORKER_RETRY_DELAY='-1s': expected a duration >= 0, got '-1s'",
        ),
        (
            {"WORKER_RETRY_MAX_DELAY": "100ms"},
            "WORKER_RETRY_MAX_DELAY='100ms': expected a duration >= retry_delay (1s), got 0.1",
        ),
        (
            {"WORKER_JOB_TIMEOUT": "0s"},
            "WORKER_JOB_TIMEOUT='0s': expected a duration > 0 and at most 168h0m0s, got 0.0",
        ),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud': expected one of debug, info, warning"),
        ({"SERVER_PORT": "99999"}, "SERVER_PORT='99999': expected 0-65535, got 99999"),
        ({"BROKER_URL": "kafka://x"}, "BROKER_URL='kafka://x': expected memory://, sqlite://"),
        ({"RESULT_MAX_JOBS": "-3"}, "RESULT_MAX_JOBS='-3': expected >= 1, got -3"),
    ],
)
def test_config_from_env_names_the_variable_in_one_line(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidValue) as info:
        Config.from_env(environ)
    text = str(info.value)
    assert text.startswith(message)
    assert "\n" not in text


def test_config_from_env_says_when_a_default_conflicts_with_a_setting() -> None:
    with pytest.raises(InvalidValue) as info:
        Config.from_env({"WORKER_RETRY_DELAY": "10m"})
    assert str(info.value) == (
        "WORKER_RETRY_MAX_DELAY (not set, default 300.0): "
        "expected a duration >= retry_delay (10m0s), got 300.0"
    )


def test_build_config_applies_settings_by_name() -> None:
    config = build_config(workers=3, job_timeout="2m", retry_delay="0", result_ttl=5)
    assert (config.workers, config.job_timeout, config.retry_delay, config.result_ttl) == (
        3,
        120.0,
        0.0,
        5.0,
    )
    with pytest.raises(InvalidValue, match="unknown setting 'worker'; expected one of"):
        build_config(worker=3)
    with pytest.raises(InvalidValue, match="job_timeout: expected a duration like"):
        build_config(job_timeout="soon")
    with pytest.raises(InvalidValue, match="expected an integer >= 0, got -2"):
        build_config(workers=-2)


def test_job_ids_are_uuid4_strings() -> None:
    ids = [new_job_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert str(parsed) == job_id
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
