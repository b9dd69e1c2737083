"""Configuration from environment variables and ``trio-tasks serve`` flags (SPEC §7)."""

from __future__ import annotations

import gc
import json
import logging
import socket
import warnings
from collections.abc import Iterator

import pytest
import structlog

from trio_tasks import Config
from trio_tasks._config import SETTINGS
from trio_tasks.cli import _parser, _UsageError, load_config, main

NO_FLAGS: dict[str, str | None] = {}


def test_defaults_are_the_seeds() -> None:
    config = load_config({}, NO_FLAGS)
    assert config == Config()
    assert (config.server_host, config.server_port) == ("0.0.0.0", 8080)
    # The one deliberate difference: the seed's admission bound of 100 refuses real loads.
    assert (config.workers, config.max_concurrency) == (10, 100_000)
    assert load_config({"WORKER_MAX_CONCURRENCY": "100"}, NO_FLAGS).max_concurrency == 100
    assert config.job_timeout == 300.0
    assert config.retry_attempts == 3
    assert (config.retry_delay, config.retry_max_delay) == (1.0, 300.0)
    assert config.shutdown_timeout == 30.0
    assert (config.log_level, config.log_format) == ("info", "json")
    assert config.broker_url == "memory://"
    assert config.tasks_app is None
    assert (config.result_ttl, config.result_max_jobs) == (3600.0, 10_000)


def test_every_variable_of_the_spec_is_read() -> None:
    environ = {
        "SERVER_HOST": "127.0.0.1",
        "SERVER_PORT": "9000",
        "WORKER_NUM_WORKERS": "20",
        "WORKER_MAX_CONCURRENCY": "200",
        "WORKER_JOB_TIMEOUT": "1.5h",
        "WORKER_RETRY_ATTEMPTS": "5",
        "WORKER_RETRY_DELAY": "300ms",
        "WORKER_RETRY_MAX_DELAY": "2h45m",
        "SHUTDOWN_TIMEOUT": "45",
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "console",
        "BROKER_URL": "redis://localhost:6379/0",
        "TASKS_APP": "myapp.tasks:registry",
        "RESULT_TTL": "2h",
        "RESULT_MAX_JOBS": "500",
    }
    config = load_config(environ, NO_FLAGS)
    assert config == Config(
        server_host="127.0.0.1",
        server_port=9000,
        workers=20,
        max_concurrency=200,
        job_timeout=5400.0,
        retry_attempts=5,
        retry_delay=0.3,
        retry_max_delay=9900.0,
        shutdown_timeout=45.0,
        log_level="debug",
        log_format="console",
        broker_url="redis://localhost:6379/0",
        tasks_app="myapp.tasks:registry",
        result_ttl=7200.0,
        result_max_jobs=500,
    )


def test_flags_win_over_the_environment() -> None:
    environ = {"SERVER_PORT": "9000", "WORKER_NUM_WORKERS": "20"}
    args = _parser().parse_args(["serve", "--port", "9100", "--job-timeout", "30s"])
    flags = {s.field: getattr(args, s.field) for s in SETTINGS}
    config = load_config(environ, flags)
    assert config.server_port == 9100
    assert config.workers == 20
    assert config.job_timeout == 30.0


def test_a_flag_stands_in_for_a_bad_variable() -> None:
    config = load_config({"SERVER_PORT": "http"}, {"server_port": "8081"})
    assert config.server_port == 8081


@pytest.mark.parametrize(
    ("environ", "flags", "message"),
    [
        ({"SERVER_PORT": "abc"}, {}, "SERVER_PORT='abc': expected an integer, got 'abc'"),
        ({"SERVER_PORT": "70000"}, {}, "SERVER_PORT='70000': expected 0-65535"),
        ({"WORKER_NUM_WORKERS": "-1"}, {}, "WORKER_NUM_WORKERS='-1': expected an integer >= 0"),
        ({"WORKER_MAX_CONCURRENCY": "0"}, {}, "WORKER_MAX_CONCURRENCY='0': expected >= 1"),
        ({"WORKER_JOB_TIMEOUT": "5x"}, {}, "WORKER_JOB_TIMEOUT='5x': expected a duration like"),
        ({"WORKER_JOB_TIMEOUT": "0s"}, {}, "WORKER_JOB_TIMEOUT='0s': expected a duration > 0"),
        ({"SHUTDOWN_TIMEOUT": "-1s"}, {}, "SHUTDOWN_TIMEOUT='-1s': expected a duration >= 0"),
        ({"LOG_LEVEL": "loud"}, {}, "LOG_LEVEL='loud': expected one of debug, info"),
        ({"LOG_FORMAT": "xml"}, {}, "LOG_FORMAT='xml': expected one of json, console"),
        ({"BROKER_URL": "kafka://x"}, {}, "BROKER_URL='kafka://x': expected memory://, sqlite://"),
        ({"RESULT_MAX_JOBS": "0"}, {}, "RESULT_MAX_JOBS='0': expected >= 1"),
        (
            {"WORKER_RETRY_DELAY": "10s", "WORKER_RETRY_MAX_DELAY": "5s"},
            {},
            "WORKER_RETRY_MAX_DELAY='5s': expected a duration >= retry_delay (10s)",
        ),
        ({}, {"server_port": "x"}, "--port='x': expected an integer, got 'x'"),
        ({}, {"server_port": "99999"}, "--port='99999': expected 0-65535"),
        ({}, {"job_timeout": "soon"}, "--job-timeout='soon': expected a duration like"),
        ({"SERVER_PORT": "x"}, {"workers": "2"}, "SERVER_PORT='x': expected an integer"),
    ],
)
def test_a_bad_value_names_the_variable_or_flag(
    environ: dict[str, str], flags: dict[str, str | None], message: str
) -> None:
    with pytest.raises(_UsageError) as caught:
        load_config(environ, flags)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_serve_with_a_bad_variable_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKER_NUM_WORKERS", "ten")
    assert main(["serve"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("trio-tasks: error: WORKER_NUM_WORKERS='ten': expected an integer, got 'ten'\n")


def test_worker_with_a_bad_flag_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["worker", "--shutdown-timeout", "later"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("trio-tasks: error: --shutdown-timeout='later': expected a duration")


def test_serve_help_lists_every_setting_with_its_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for setting in SETTINGS:
        assert f"{setting.flag} {setting.env}" in text
    assert "(default: 5m0s)" in text


def test_worker_takes_no_http_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["worker", "--port", "8080"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --port" in capsys.readouterr().err


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``serve`` configures logging for the whole process; put the test setup back after."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("argv", "environ", "name"),
    [
        (["worker"], {"BROKER_URL": "redis://:secret@localhost:abc/0"}, "BROKER_URL"),
        (["serve", "--broker", "redis://localhost:abc/0"], {}, "--broker"),
    ],
)
def test_a_redis_url_with_a_bad_port_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    environ: dict[str, str],
    name: str,
) -> None:
    # It used to escape as a ValueError traceback with exit status 1.
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"trio-tasks: error: {name}='redis://")
    assert "localhost:abc/0': malformed broker URL" in err
    assert "localhost:abc/0" in err
    assert "secret" not in err
    assert len(err.splitlines()) == 1


@pytest.mark.usefixtures("restore_logging")
def test_serve_on_a_taken_port_exits_1_with_a_json_log_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main(["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"])
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert status == 1
    assert err == ""
    assert records[-1]["msg"] == "trio-tasks cannot start"
    assert records[-1]["level"] == "error"
    assert records[-1]["address"] == f"127.0.0.1:{port}"
    assert "Address already in use" in records[-1]["error"]
    assert "exception" not in records[-1]  # a message, not a traceback
    # hypercorn leaves the socket whose bind failed to the garbage collector.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
