"""Process-isolated handlers for the tests (``isolate="process"`` needs module-level functions,
which a worker process imports by name).

``registry`` holds them; ``TASKS_APP=isolated_app:registry`` serves them (with ``tests/`` on
``PYTHONPATH``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import trio

import trio_tasks
from trio_tasks import ProcessContext

registry = trio_tasks.TaskRegistry()


@registry.task("spin", isolate="process", timeout="1s", retries=0)
def spin(ctx: ProcessContext) -> None:
    """Write this process's pid to ``payload["pid_file"]``, then burn CPU for ever."""
    Path(ctx.payload["pid_file"]).write_text(str(os.getpid()))
    while True:
        pass


@registry.task("square", isolate="process")
def square(ctx: ProcessContext) -> dict[str, Any]:
    """Return the square of ``payload["n"]`` and where it ran."""
    n = int(ctx.payload["n"])
    return {"square": n * n, "pid": os.getpid(), "attempt": ctx.attempt}


@registry.task("crash", isolate="process", retries=0)
def crash(ctx: ProcessContext) -> None:
    """End the process at once, as a segfault or an OOM kill would."""
    os._exit(3)


@registry.task("not_json", isolate="process", retries=0)
def not_json(ctx: ProcessContext) -> object:
    """Return something that cannot cross as JSON."""
    return {1, 2, 3}


@registry.task("exits", isolate="process", retries=0)
def exits(ctx: ProcessContext) -> None:
    """Raise SystemExit in the process."""
    raise SystemExit("leaving")


class _Unpicklable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = trio.Lock()  # cannot be pickled: the exception crosses as name and message


@registry.task("odd_error", isolate="process", retries=0)
def odd_error(ctx: ProcessContext) -> None:
    """Raise an exception that cannot be pickled."""
    raise _Unpicklable("cannot cross as it is")


@registry.task("nap", isolate="process", timeout="30s", retries=0)
def nap(ctx: ProcessContext) -> str:
    """Sleep ``payload["seconds"]`` (a blocking sleep: this is a process)."""
    Path(ctx.payload["pid_file"]).write_text(str(os.getpid()))
    time.sleep(float(ctx.payload["seconds"]))
    return "rested"


@registry.task("ping")
async def ping(ctx: trio_tasks.JobContext) -> str:
    """An ordinary async job, to show the node goes on meanwhile."""
    return "pong"
