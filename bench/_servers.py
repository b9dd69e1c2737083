"""Start real servers for the benchmarks: ``trio-tasks serve`` and the bare Quart-Trio app."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout} s")


@contextmanager
def running(argv: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    """Run ``argv`` (a Python module command line) until the block ends, then stop it."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    process = subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, process)
        yield
    finally:
        stop_processes([process])


def stop_processes(processes: list[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    """SIGTERM every process still running, then wait for each; kill one that takes too long."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve_argv() -> list[str]:
    """The command line of ``trio-tasks serve``."""
    return ["-m", "trio_tasks", "serve"]


def serve_env(port: int, **extra: str) -> dict[str, str]:
    """Environment for a benchmark ``trio-tasks serve``: no-op handlers, every other setting
    at its default (logging at info included; its lines go to /dev/null)."""
    return {
        "SERVER_HOST": "127.0.0.1",
        "SERVER_PORT": str(port),
        "TASKS_APP": "bench.app:tasks",
        **extra,
    }
