"""Job types for the multi-node tests (``TASKS_APP=cluster_app:registry``, with ``tests/`` on
``PYTHONPATH``).

Every handler appends one line per event to ``$CLUSTER_RUNS_DIR/runs-<pid>.txt`` (``run``,
``start``, ``done``, ``cancelled`` followed by the job id), so a test can check across
processes that each job ran exactly once, and which process ran it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import trio

import trio_tasks

registry = trio_tasks.TaskRegistry()


def record(event: str, job_id: str) -> None:
    """Append ``event job_id`` to this process's file (one ``write`` of one line: atomic)."""
    directory = Path(os.environ["CLUSTER_RUNS_DIR"])
    with open(directory / f"runs-{os.getpid()}.txt", "a", encoding="utf-8") as file:
        file.write(f"{event} {job_id}\n")


def read_events(directory: Path) -> list[tuple[str, str, str]]:
    """Every recorded ``(pid, event, job_id)`` of every process."""
    events: list[tuple[str, str, str]] = []
    for path in sorted(directory.glob("runs-*.txt")):
        pid = path.stem.removeprefix("runs-")
        for line in path.read_text(encoding="utf-8").splitlines():
            event, job_id = line.split(" ", 1)
            events.append((pid, event, job_id))
    return events


@registry.task("noop")
async def noop(ctx: trio_tasks.JobContext) -> None:
    """Do nothing but record the run."""
    record("run", ctx.job.id)


@registry.task("sleep")
async def sleep(ctx: trio_tasks.JobContext) -> float:
    """Sleep ``payload["seconds"]``; record the start, the end, or the cancellation."""
    record("start", ctx.job.id)
    try:
        await trio.sleep(float(ctx.payload.get("seconds", 0)))
    except trio.Cancelled:
        record("cancelled", ctx.job.id)
        raise
    record("done", ctx.job.id)
    return float(ctx.payload.get("seconds", 0))


#: What ``raise`` jobs raise, by ``payload["kind"]``: none of these may stop a node.
RAISES = {
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": SystemExit,
    "GeneratorExit": GeneratorExit,
    "BaseException": BaseException,
}


@registry.task("raise")
async def raise_(ctx: trio_tasks.JobContext) -> None:
    """Raise the ``BaseException`` named by ``payload["kind"]`` (after a checkpoint)."""
    record("run", ctx.job.id)
    await trio.lowlevel.checkpoint()
    raise RAISES[str(ctx.payload["kind"])]("raised by the handler")


@registry.task("capped", concurrency=2)
async def capped(ctx: trio_tasks.JobContext) -> None:
    """At most two at once across every node (a per-type limit): record ``span <start> <end>``
    (wall-clock seconds, one machine) around a sleep of ``payload["seconds"]``."""
    started = time.time()
    await trio.sleep(float(ctx.payload.get("seconds", 0.1)))
    record("span", f"{started!r} {time.time()!r} {ctx.job.id}")
