"""Run ``python -m trio_tasks serve`` (or ``worker``) as a real subprocess for end-to-end tests.

The server listens on port 0; its URL is read from its own ``http server listening`` log line,
so no port is ever guessed. Every stdout line is kept (raw and parsed) for assertions.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent


def _limit_files(open_files: int) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, hard))


#: Settings that keep an end-to-end server small and quick; tests override what they test.
FAST_ENV = {
    "SERVER_HOST": "127.0.0.1",
    "SERVER_PORT": "0",
    "WORKER_NUM_WORKERS": "2",
    "SHUTDOWN_TIMEOUT": "10s",
    "WORKER_RETRY_DELAY": "10ms",
    "WORKER_RETRY_MAX_DELAY": "50ms",
    "LOG_LEVEL": "info",
    "LOG_FORMAT": "json",
}


class ServerProcess:
    """A ``trio-tasks`` subprocess. Use as a context manager: it is killed on the way out if
    still running, so a failing test never leaves a server behind."""

    def __init__(
        self,
        command: str = "serve",
        *args: str,
        env: dict[str, str] | None = None,
        open_files: int | None = None,
    ):
        full_env = {k: v for k, v in os.environ.items() if k not in FAST_ENV}
        full_env.update(FAST_ENV)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trio_tasks", command, *args],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # ``open_files``: the soft RLIMIT_NOFILE of the server (the connection-limit test).
            preexec_fn=None if open_files is None else partial(_limit_files, open_files),
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout_lines)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr_lines)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()
        self.url = ""

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for reader in self._readers:
            reader.join(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    # -- reading the logs ----------------------------------------------------------------

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every stdout line parsed as JSON (a line that is not JSON fails the test)."""
        with self._changed:
            lines = list(self.stdout_lines)
        return [json.loads(line) for line in lines]

    def wait_for_log(self, msg: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        """Wait for the first log record with this ``msg`` (and these field values)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.stdout_lines:
                    record = json.loads(line)
                    if record.get("msg") == msg and all(
                        record.get(k) == v for k, v in fields.items()
                    ):
                        return record
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._alive_readers()):
                    raise AssertionError(
                        f"no log line {msg!r} {fields or ''} within {timeout}s; "
                        f"stdout={self.stdout_lines!r} stderr={self.stderr_lines!r}"
                    )
                self._changed.wait(min(left, 0.1))

    def _alive_readers(self) -> bool:
        return any(reader.is_alive() for reader in self._readers)

    def wait_ready(self, timeout: float = 15.0) -> str:
        """Wait until the HTTP API listens; return its URL."""
        record = self.wait_for_log("http server listening", timeout)
        self.url = str(record["urls"][0])
        self.wait_for_log("trio-tasks started", timeout)
        return self.url

    # -- signals and exit ----------------------------------------------------------------

    def send_signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit and for its output to be read; return its status."""
        status = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return status
