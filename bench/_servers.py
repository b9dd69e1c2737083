"""Start real servers for the benchmarks: ``trio-tasks serve`` and the bare Quart-Trio app."""

from __future__ import annotations

import compileall
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def _compile_tree() -> None:
    # Once per benchmark process, as pip compiles an installed package once.
    for folder in ("trio_tasks", "bench"):
        compileall.compile_dir(ROOT / folder, quiet=1)


def process_env(**extra: str) -> dict[str, str]:
    """The environment of a process the benchmarks start: this one's, with the repository on
    ``PYTHONPATH`` and its modules' bytecode used as an installed package's is.

    pip compiles a package's modules when it installs it; this tree's are compiled here, once
    (``compileall``), and ``PYTHONDONTWRITEBYTECODE`` is dropped: with it set (some machines
    set it) every process would compile trio-tasks' sources again as it starts, ~100 ms that no
    installed peer pays."""
    _compile_tree()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)
    return {**env, **extra}


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
    full_env = process_env(**(env or {}))
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


@contextmanager
def redis_server(*extra: str, port: int | None = None) -> Iterator[int]:
    """A throw-away ``redis-server`` on 127.0.0.1 (no persistence) with ``extra`` options;
    yields its port once it answers ``PING``. Standard library only: ``bench.peers`` runs it
    in a virtualenv of its own."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                directory,
                "--logfile",
                str(Path(directory) / "redis.log"),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_pong(port, process)
            yield port
        finally:
            stop_processes([process], timeout=10)


def _wait_pong(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.02)
