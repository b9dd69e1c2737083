"""The client side of every scenario, the same code for every system.

``python -m bench.peers._client SYSTEM ROLE [N] [C] [KIND]`` imports ``bench.peers._<system>``,
which provides:

* ``RUNTIME``: ``"asyncio"`` or ``"trio"`` (the event loop this client runs on);
* ``version() -> str``;
* ``open_client(url)``: an async context manager yielding an object with
  ``submit(kind) -> handle`` (queue one job, ``kind`` is ``"noop"`` or ``"sleep"``),
  ``prequeue(kind, n) -> list[handle]`` (queue ``n`` jobs, untimed, any way the system likes),
  ``done(handle) -> bool`` (a non-blocking look-up: is the job's result stored?) and
  ``wait(handle)`` (wait for the result the way the system's caller does).

Roles (one JSON object per line on stdout; timestamps are ``time.monotonic()``, which is the
system-wide ``CLOCK_MONOTONIC`` on Linux, so they compare with the harness's):

* ``version``: ``{"version": ...}``.
* ``enqueue N``: ``N`` sequential submissions, timed after 100 untimed ones.
* ``drain N C KIND``: queue ``N`` jobs, print ``{"ready": true}``, then watch for the end (see
  :func:`watch`) and print ``{"end": t, ...}``; the harness spawns the worker after ``ready``.
* ``latency N``: queue one job, ``ready``, watch it (the spawn-to-first-job figure), then ``N``
  sequential submit-and-wait round trips (after 20 untimed ones; at most 10 s of them).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

#: How often the observer looks again when the job it watches is not done.
POLL = 0.002
#: Jobs timed by ``enqueue`` after the untimed warm-up, and the warm-up's size.
ENQUEUE_WARMUP = 100
LATENCY_WARMUP = 20
#: The round trips stop after this many seconds even if fewer than asked were made (a system
#: with 100 ms round trips would otherwise spend most of the time budget here).
LATENCY_BUDGET = 10.0

Sleep = Callable[[float], Awaitable[Any]]


async def gather_in_order(submit: Callable[[], Awaitable[Any]], count: int) -> list[Any]:
    """``count`` submissions on asyncio, 100 at a time (pre-queueing is not timed); the handles in
    the order the calls were made."""
    import asyncio

    handles: list[Any] = []
    for first in range(0, count, 100):
        batch = [submit() for _ in range(min(100, count - first))]
        handles.extend(await asyncio.gather(*batch))
    return handles


def emit(**values: Any) -> None:
    """One JSON line to the harness."""
    sys.stdout.write(json.dumps(values) + "\n")
    sys.stdout.flush()


async def watch(client: Any, handles: list[Any], concurrency: int, sleep: Sleep) -> dict[str, Any]:
    """Observe the end of a drain through the system's own result look-up.

    Jobs run in queue order with at most ``concurrency`` at a time, so the last result lands among
    the last ``2 * concurrency`` jobs queued: those are watched in order (a cursor that moves on
    when the job under it is done, and looks again every :data:`POLL` seconds when not), and the
    end is the moment the cursor passes the last job. Afterwards, untimed, every earlier job is
    checked; one found without a result (a system that runs jobs far out of order) is waited for
    and moves the end to when it was seen (``stragglers`` counts them).
    """
    window = min(len(handles), 2 * concurrency)
    probes = 0
    end = 0.0
    for handle in handles[len(handles) - window :]:
        while True:
            probes += 1
            if await client.done(handle):
                break
            await sleep(POLL)
        end = time.monotonic()
    stragglers = 0
    for handle in handles[: len(handles) - window]:
        if await client.done(handle):
            continue
        stragglers += 1
        while not await client.done(handle):
            await sleep(POLL)
        end = time.monotonic()
    return {"end": end, "probes": probes, "stragglers": stragglers}


async def _submit_and_wait(client: Any, kind: str) -> None:
    await client.wait(await client.submit(kind))


async def run(module: Any, role: str, args: list[str], sleep: Sleep) -> None:
    """Play ``role`` for the system ``module``."""
    if role == "version":
        emit(version=module.version())
        return
    url = os.environ["BENCH_PEERS_URL"]
    async with module.open_client(url) as client:
        if role == "enqueue":
            count = int(args[0])
            for _ in range(ENQUEUE_WARMUP):
                await client.submit("noop")
            started = time.perf_counter()
            for _ in range(count):
                await client.submit("noop")
            seconds = time.perf_counter() - started
            emit(jobs=count, seconds=seconds, jobs_per_s=count / seconds)
        elif role == "drain":
            count, concurrency, kind = int(args[0]), int(args[1]), args[2]
            handles = await client.prequeue(kind, count)
            emit(ready=True)
            emit(**await watch(client, handles, concurrency, sleep))
        elif role == "latency":
            count = int(args[0])
            handles = await client.prequeue("noop", 1)
            emit(ready=True)
            emit(**await watch(client, handles, 1, sleep))
            for _ in range(LATENCY_WARMUP):
                await _submit_and_wait(client, "noop")
            samples: list[float] = []
            deadline = time.perf_counter() + LATENCY_BUDGET
            while len(samples) < count and time.perf_counter() < deadline:
                started = time.perf_counter()
                await _submit_and_wait(client, "noop")
                samples.append(time.perf_counter() - started)
            emit(latency=samples)
        else:
            raise SystemExit(f"unknown role {role!r}")


def main(argv: list[str]) -> None:
    """``SYSTEM ROLE [ARGS...]``."""
    system, role, *args = argv
    module = importlib.import_module(f"bench.peers.{system}")
    if module.RUNTIME == "trio":
        import trio

        trio.run(run, module, role, args, trio.sleep)
    else:
        import asyncio

        asyncio.run(run(module, role, args, asyncio.sleep))


if __name__ == "__main__":
    main(sys.argv[1:])
