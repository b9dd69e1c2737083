"""The settings table: each :class:`~trio_tasks.Config` field's environment variable, flag,
parser and description (SPEC §7), in the order ``trio-tasks serve --help`` lists them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from ._durations import parse_duration
from ._errors import InvalidValue

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "console")


@attrs.frozen
class Setting:
    """How one :class:`Config` field is read: its variable, flag, parser and description."""

    field: str
    env: str
    flag: str
    parse: Callable[[str], Any]
    help: str


def _int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise InvalidValue(f"expected an integer, got {raw!r}") from None


def _duration(raw: str) -> float:
    return parse_duration(raw, name="duration")


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise InvalidValue(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _text(raw: str) -> str:
    return raw.strip()


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise InvalidValue(f"expected true or false, got {raw!r}")


#: Every setting, in the order ``trio-tasks serve --help`` lists them.
SETTINGS: tuple[Setting, ...] = (
    Setting("server_host", "SERVER_HOST", "--host", _text, "listen address"),
    Setting("server_port", "SERVER_PORT", "--port", _int, "listen port"),
    Setting("workers", "WORKER_NUM_WORKERS", "--workers", _int, "worker tasks per node"),
    Setting(
        "max_concurrency",
        "WORKER_MAX_CONCURRENCY",
        "--max-concurrency",
        _int,
        "most unfinished jobs (queued, scheduled, running) before submissions are refused",
    ),
    Setting("job_timeout", "WORKER_JOB_TIMEOUT", "--job-timeout", _duration, "default timeout"),
    Setting(
        "retry_attempts",
        "WORKER_RETRY_ATTEMPTS",
        "--retry-attempts",
        _int,
        "retries after the first attempt",
    ),
    Setting("retry_delay", "WORKER_RETRY_DELAY", "--retry-delay", _duration, "backoff base"),
    Setting(
        "retry_max_delay", "WORKER_RETRY_MAX_DELAY", "--retry-max-delay", _duration, "backoff cap"
    ),
    Setting(
        "shutdown_timeout",
        "SHUTDOWN_TIMEOUT",
        "--shutdown-timeout",
        _duration,
        "grace period for running jobs at shutdown",
    ),
    Setting("log_level", "LOG_LEVEL", "--log-level", _choice(LOG_LEVELS), "log level"),
    Setting("log_format", "LOG_FORMAT", "--log-format", _choice(LOG_FORMATS), "json or console"),
    Setting(
        "broker_url",
        "BROKER_URL",
        "--broker",
        _text,
        "memory://, sqlite:///path.db or redis://host:port/db (see docs/configuration.md)",
    ),
    Setting("tasks_app", "TASKS_APP", "--app", _text, "module:registry with your handlers"),
    Setting("result_ttl", "RESULT_TTL", "--result-ttl", _duration, "how long results are kept"),
    Setting(
        "result_max_jobs",
        "RESULT_MAX_JOBS",
        "--result-max-jobs",
        _int,
        "most finished jobs kept in memory",
    ),
    Setting(
        "max_body_size",
        "MAX_BODY_SIZE",
        "--max-body-size",
        _int,
        "largest accepted request body in bytes",
    ),
    Setting(
        "loop_block_warning",
        "LOOP_BLOCK_WARNING",
        "--loop-block-warning",
        _duration,
        "warn when a handler blocks the event loop this long (0: off)",
    ),
    Setting(
        "result_max_bytes",
        "RESULT_MAX_BYTES",
        "--result-max-bytes",
        _int,
        "most bytes of finished jobs kept",
    ),
    Setting("failed_ttl", "FAILED_TTL", "--failed-ttl", _duration, "how long failed jobs are kept"),
    Setting(
        "api_token",
        "API_TOKEN",
        "--api-token",
        _text,
        "bearer tokens (comma-separated) required by every endpoint but /health",
    ),
    Setting(
        "api_read_token",
        "API_READ_TOKEN",
        "--api-read-token",
        _text,
        "bearer tokens (comma-separated) for the GET endpoints only",
    ),
    Setting(
        "metrics_public",
        "METRICS_PUBLIC",
        "--metrics-public",
        _bool,
        "serve /metrics without a token",
    ),
    Setting(
        "cors_origins",
        "CORS_ORIGINS",
        "--cors-origins",
        _text,
        "origins (comma-separated) allowed to call the API from a browser",
    ),
    Setting(
        "allowed_hosts",
        "ALLOWED_HOSTS",
        "--allowed-hosts",
        _text,
        "Host header values (comma-separated) the server answers",
    ),
    Setting(
        "certfile",
        "TLS_CERTFILE",
        "--certfile",
        _text,
        "PEM certificate (chain): serve HTTPS (with --keyfile)",
    ),
    Setting("keyfile", "TLS_KEYFILE", "--keyfile", _text, "PEM private key of --certfile"),
    Setting(
        "thread_workers",
        "THREAD_WORKERS",
        "--thread-workers",
        _int,
        "threads for plain def handlers",
    ),
    Setting(
        "process_workers",
        "PROCESS_WORKERS",
        "--process-workers",
        _int,
        "processes for isolate='process' handlers (default: the number of cores)",
    ),
    Setting(
        "schedules_file",
        "SCHEDULES_FILE",
        "--schedules-file",
        _text,
        "periodic jobs from a TOML file",
    ),
    Setting(
        "priority_aging",
        "PRIORITY_AGING",
        "--priority-aging",
        _duration,
        "a job waiting this long is taken as one priority higher (0: strict priority)",
    ),
    Setting(
        "broker_min_replicas",
        "BROKER_MIN_REPLICAS",
        "--broker-min-replicas",
        _int,
        "Redis replicas that must confirm a write before it is acknowledged",
    ),
)
