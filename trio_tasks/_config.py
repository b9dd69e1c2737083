"""Settings: :class:`Config`, read from environment variables (the seed's names) and flags."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._durations import format_duration, parse_duration
from ._errors import InvalidValue, TrioTasksError
from ._settings import LOG_FORMATS, LOG_LEVELS, SETTINGS, Setting

__all__ = ["SETTINGS", "Config", "Setting", "build_config"]
from ._request import MAX_RETRIES, MAX_TIMEOUT
from ._secrets import redact_url

#: The broker URL schemes a node accepts (see :func:`trio_tasks.brokers.make_broker`).
BROKER_SCHEMES = (
    "memory://",
    "sqlite://",
    "redis://",
    "rediss://",
    "unix://",
    "redis+sentinel://",
    "redis+cluster://",
)


def _duration_field(default: float) -> Any:
    # Marked once here; the settings table, build_config and the command line derive from it.
    return attrs.field(default=default, metadata={"duration": True})


@attrs.frozen(kw_only=True)
class Config:
    """Everything a trio-tasks node needs to know. Durations are in seconds.

    Build it from the environment with :meth:`from_env`; every value is validated on
    construction, and :meth:`from_env` names the variable when one is wrong.
    """

    server_host: str = "0.0.0.0"
    server_port: int = 8080
    workers: int = 10
    # The seed keeps 100, which refuses real loads (a burst of 101 jobs): ours is sized by
    # memory (about half a KiB per queued job, so ~50 MB at the bound). WORKER_MAX_CONCURRENCY=100
    # restores the seed's.
    max_concurrency: int = 100_000
    job_timeout: float = _duration_field(300.0)
    retry_attempts: int = 3
    retry_delay: float = _duration_field(1.0)
    retry_max_delay: float = _duration_field(300.0)
    shutdown_timeout: float = _duration_field(30.0)
    log_level: str = "info"
    log_format: str = "json"
    broker_url: str = "memory://"
    tasks_app: str | None = None
    result_ttl: float = _duration_field(3600.0)
    result_max_jobs: int = 10_000
    max_body_size: int = 1_048_576
    loop_block_warning: float = _duration_field(0.1)
    result_max_bytes: int = 256 * 1_048_576
    failed_ttl: float = _duration_field(7 * 24 * 3600.0)
    api_token: str | None = attrs.field(default=None, repr=False)
    api_read_token: str | None = attrs.field(default=None, repr=False)
    metrics_public: bool = False
    cors_origins: str | None = None
    allowed_hosts: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    thread_workers: int = 32
    process_workers: int | None = None
    schedules_file: str | None = None
    priority_aging: float = _duration_field(0.0)
    broker_min_replicas: int = 0

    def __attrs_post_init__(self) -> None:
        _check(0 <= self.server_port <= 65535, "server_port", self.server_port, "0-65535")
        _check(self.workers >= 0, "workers", self.workers, "an integer >= 0")
        _check(self.max_concurrency >= 1, "max_concurrency", self.max_concurrency, ">= 1")
        _check(
            0 < self.job_timeout <= MAX_TIMEOUT,
            "job_timeout",
            self.job_timeout,
            f"a duration > 0 and at most {format_duration(MAX_TIMEOUT)}",
        )
        _check(
            0 <= self.retry_attempts <= MAX_RETRIES,
            "retry_attempts",
            self.retry_attempts,
            f"0-{MAX_RETRIES}",
        )
        _check(self.retry_delay >= 0, "retry_delay", self.retry_delay, "a duration >= 0")
        _check(
            self.retry_max_delay >= self.retry_delay,
            "retry_max_delay",
            self.retry_max_delay,
            f"a duration >= retry_delay ({format_duration(self.retry_delay)})",
        )
        _check(self.shutdown_timeout >= 0, "shutdown_timeout", self.shutdown_timeout, ">= 0")
        _check(self.log_level in LOG_LEVELS, "log_level", self.log_level, "|".join(LOG_LEVELS))
        _check(self.log_format in LOG_FORMATS, "log_format", self.log_format, "|".join(LOG_FORMATS))
        _check(
            self.broker_url.startswith(BROKER_SCHEMES),
            "broker_url",
            redact_url(self.broker_url),
            "memory://, sqlite:///path.db, redis://host:port/db, rediss://…, "
            "redis+sentinel://… or redis+cluster://…",
        )
        _check(self.result_ttl > 0, "result_ttl", self.result_ttl, "a duration > 0")
        _check(self.result_max_jobs >= 1, "result_max_jobs", self.result_max_jobs, ">= 1")
        _check(self.max_body_size >= 1024, "max_body_size", self.max_body_size, ">= 1024")
        _check(self.result_max_bytes >= 1024, "result_max_bytes", self.result_max_bytes, ">= 1024")
        _check(self.failed_ttl > 0, "failed_ttl", self.failed_ttl, "a duration > 0")
        _check(self.thread_workers >= 1, "thread_workers", self.thread_workers, ">= 1")
        _check(
            self.process_workers is None or self.process_workers >= 1,
            "process_workers",
            self.process_workers,
            ">= 1",
        )
        _check(self.priority_aging >= 0, "priority_aging", self.priority_aging, ">= 0 (0: off)")
        _check(
            self.broker_min_replicas >= 0, "broker_min_replicas", self.broker_min_replicas, ">= 0"
        )
        _check(
            self.loop_block_warning >= 0,
            "loop_block_warning",
            self.loop_block_warning,
            "a duration >= 0 (0 turns the warning off)",
        )
        for field in SECRET_FIELDS:
            tokens = split_list(getattr(self, field))
            if any(len(t) < MIN_TOKEN_LENGTH or not _token_text(t) for t in tokens):
                raise _ConfigError(
                    field,
                    f"expected tokens of at least {MIN_TOKEN_LENGTH} printable ASCII characters "
                    "without spaces, separated by commas (the value is not shown)",
                )
        _check(
            not split_list(self.api_read_token) or bool(split_list(self.api_token)),
            "api_read_token",
            "(set)",
            "API_TOKEN as well: a read-only token alone would leave writes open",
        )
        _check(
            (self.certfile is None) == (self.keyfile is None),
            "keyfile" if self.keyfile is None else "certfile",
            None,
            "TLS_CERTFILE and TLS_KEYFILE together (a certificate and its key)",
        )
        for field in ("cors_origins", "allowed_hosts"):
            entries = split_list(getattr(self, field))
            _check(
                all(e.isascii() and e.isprintable() and " " not in e for e in entries),
                field,
                getattr(self, field),
                "comma-separated names without spaces",
            )
        _check(
            all(
                o == "*" or o.startswith(("http://", "https://"))
                for o in split_list(self.cors_origins)
            ),
            "cors_origins",
            self.cors_origins,
            "origins like https://app.example.org (or *), comma-separated",
        )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None
    ) -> Config:
        """Read every :data:`SETTINGS` variable present in ``environ``; ``overrides`` (already
        parsed values by field name, e.g. from command-line flags) win over the environment.

        Raises:
            InvalidValue: one line naming the variable, the bad value and what was expected.
        """
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = environ.get(setting.env)
            if raw is None or raw == "":
                continue
            try:
                values[setting.field] = setting.parse(raw)
            except InvalidValue as exc:
                raise InvalidValue(
                    f"{setting.env}={shown_value(setting.field, raw)}: {_reason(exc)}"
                ) from None
        if overrides:
            values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except InvalidValue as exc:
            field = getattr(exc, "field", None)
            env = next((s.env for s in SETTINGS if s.field == field), field)
            # Show the value as it was written (``5s``), not as parsed (``5.0``).
            shown = values.get(field or "")
            if env in environ and not (overrides and overrides.get(field or "") is not None):
                shown = environ[env or ""]
            if field is not None and field not in values:
                # A default that another setting conflicts with (WORKER_RETRY_DELAY=10m against
                # the 5m cap): say it is the default rather than "=None".
                default = attrs.fields_dict(cls)[field].default
                message = f"{env} (not set, default {default!r}): {_reason(exc)}"
                raise InvalidValue(message) from None
            raise InvalidValue(f"{env}={shown_value(field, shown)}: {_reason(exc)}") from None


def shown_value(field: str | None, value: object) -> str:
    """``value`` of setting ``field`` as an error message shows it: its repr, or ``'***'``
    for a secret."""
    if field in SECRET_FIELDS:
        return "'***'"
    return (
        repr(redact_url(value)) if field == "broker_url" and isinstance(value, str) else repr(value)
    )


#: The :class:`Config` fields that hold secrets: never shown in a message or a log line.
SECRET_FIELDS = ("api_token", "api_read_token")
#: Shortest accepted API token: a guessable token protects nothing.
MIN_TOKEN_LENGTH = 16


def split_list(value: str | None) -> tuple[str, ...]:
    """The entries of a comma-separated setting, stripped, empty ones dropped."""
    if not value:
        return ()
    return tuple(entry for entry in (part.strip() for part in value.split(",")) if entry)


def _token_text(token: str) -> bool:
    return token.isascii() and token.isprintable() and " " not in token


#: The :class:`Config` fields that hold durations (seconds; Go syntax accepted on input).
DURATION_FIELDS = frozenset(f.name for f in attrs.fields(Config) if f.metadata.get("duration"))


def build_config(config: Config | None = None, **settings: Any) -> Config:
    """Return ``config`` (default: all defaults) with ``settings`` applied by field name.

    Duration settings accept Go durations or seconds; ``None`` leaves a setting as it is.

    Raises:
        InvalidValue: an unknown setting or a bad value.
    """
    base = config or Config()
    fields = attrs.fields_dict(Config)
    values: dict[str, Any] = {}
    for name, value in settings.items():
        if name not in fields:
            raise InvalidValue(f"unknown setting {name!r}; expected one of {', '.join(fields)}")
        if value is None:
            continue
        if name in DURATION_FIELDS:
            value = parse_duration(value, name=name)
        values[name] = value
    try:
        return attrs.evolve(base, **values)
    except TrioTasksError as exc:
        raise InvalidValue(str(exc)) from None


class _ConfigError(InvalidValue):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _check(ok: bool, field: str, value: object, expected: str) -> None:
    if not ok:
        raise _ConfigError(field, f"expected {expected}, got {value!r}")


def _reason(exc: Exception) -> str:
    # Parser messages start with the generic name they were given; keep only what follows.
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith(("value: ", "duration: ")) else text
