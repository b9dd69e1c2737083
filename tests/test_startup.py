"""A worker starts fast: importing trio-tasks for `trio-tasks worker` pulls in no HTTP stack,
and a worker on one Redis server imports neither coredis nor structlog on its way to its jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import trio_tasks

HERE = Path(__file__).parent

HEAVY = (
    "quart",
    "hypercorn",
    "quart_trio",
    "trio.testing",
    "pytest",
    "trio_parallel",
    "importlib.metadata",
)


def _imported_after(statement: str) -> list[str]:
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.split()


def test_the_library_and_the_cli_import_no_http_stack() -> None:
    assert _imported_after("import trio_tasks, trio_tasks.cli") == []


def test_the_redis_broker_imports_no_http_stack() -> None:
    # (coredis itself reads its version with importlib.metadata.)
    imported = _imported_after("import trio_tasks.brokers._redis")
    assert [m for m in imported if m != "importlib.metadata"] == []


def test_serve_is_imported_when_asked_for() -> None:
    imported = _imported_after(
        "from trio_tasks import serve\nassert serve.__module__ == 'trio_tasks'"
    )
    assert "quart" in imported
    assert "hypercorn" in imported


def test_version_is_looked_up_when_asked_for() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trio_tasks", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.startswith("trio-tasks ")


def test_the_redis_broker_imports_no_redis_client_until_it_needs_one() -> None:
    code = (
        "import sys\n"
        "from trio_tasks.brokers._redis import RedisBroker\n"
        "RedisBroker('redis://127.0.0.1:6379/0?namespace=x')\n"
        "print(' '.join(m for m in ('coredis', 'anyio', 'beartype') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == []


@pytest.mark.redis
async def test_a_redis_worker_runs_its_first_job_without_coredis_or_structlog(
    redis_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "BROKER_URL": redis_url,
        "TASKS_APP": "startup_app:tasks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        "LOG_LEVEL": "debug",  # every line of the way rendered, none through structlog
    }
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = await trio.lowlevel.open_process(
            [sys.executable, "-m", "trio_tasks", "worker"], env=env, stdout=out, stderr=out
        )
    try:
        registry = trio_tasks.TaskRegistry()
        registry.register("imported", lambda ctx: None)
        async with trio_tasks.open_processor(registry, broker=redis_url, workers=0) as client:
            job = await client.submit("imported")
            with trio.fail_after(30):
                done = await client.wait(job.id)
            client.shutdown(grace=0)
    finally:
        worker.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            await worker.wait()
    output = log.read_text()
    assert done.status.value == "completed", output
    assert done.result == [], output
    assert '"msg":"redis broker started"' in output
    assert worker.returncode == 0, output
