"""A worker starts fast: importing trio-tasks for `trio-tasks worker` pulls in no HTTP stack."""

from __future__ import annotations

import subprocess
import sys

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
