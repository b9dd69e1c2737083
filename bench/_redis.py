"""Redis broker benchmarks, against a ``redis-server`` of their own on a free port.

- ``latency``: submit-to-start latency on an idle system (an in-process processor on the Redis
  broker, one job at a time, as ``latency_memory`` in ``_inprocess.py``).
- ``noop_1p`` … ``sleep_2p``: a producer (an in-process processor with ``workers=0``) queues
  every job first; then 1 or 2 ``trio-tasks worker`` processes are started and drain them.
  Completion is detected by polling the namespace's counters every 20 ms; the rate is measured
  from the first job's ``started_at`` to the last job's ``completed_at`` (both from the job
  records in Redis, written by the workers on this machine's clock), so the processes' start-up
  (imports, connecting) is not counted. ``startup_s`` says how long that start-up took.

Each drain is run ``repeat`` times (3, or 1 with ``--quick``) and the median is reported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import coredis
import trio

import trio_tasks
from trio_tasks import JobRequest
from trio_tasks.brokers._redis import RedisBroker

from ._inprocess import measure_latency
from ._servers import ROOT, free_port, stop_processes

#: Jobs per producer batch (one FCALL each).
_SUBMIT_BATCH = 500
#: How often completion is polled.
_POLL = 0.020

# The first job started and the last one completed, from the records of the finished jobs.
_SPAN = """
local first, last = nil, nil
local ids = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #ids, 2 do
  local started = tonumber(redis.call('HGET', ARGV[1] .. 'job:' .. ids[i], 'started_at'))
  if started and (first == nil or started < first) then first = started end
  local done = tonumber(ids[i + 1])
  if last == nil or done > last then last = done end
end
return {tostring(first), tostring(last)}
"""


@contextmanager
def _redis_server() -> Iterator[str]:
    """A throw-away ``redis-server`` (no persistence); yields its URL."""
    binary = shutil.which("redis-server")
    assert binary is not None
    port = free_port()
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
                "--dir",
                directory,
                "--logfile",
                str(Path(directory) / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            trio.run(_wait_ready, f"redis://127.0.0.1:{port}/0")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop_processes([process], timeout=10)


async def _wait_ready(url: str) -> None:
    with trio.fail_after(10):
        while True:
            try:
                async with coredis.Redis.from_url(url, decode_responses=True) as client:
                    await client.ping()
                    return
            except (coredis.exceptions.ConnectionError, OSError):
                await trio.sleep(0.05)


async def _latency(url: str, samples: int) -> dict[str, float]:
    """Submit-to-start latency on an idle node, one job at a time."""
    with trio.fail_after(60):
        broker = RedisBroker(f"{url}?namespace=latency", max_concurrency=10_000)
        return await measure_latency(samples, broker, warmup=20)


def _spawn_worker(url: str, workers: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BROKER_URL": url,
        "TASKS_APP": "bench.app:tasks",
        "WORKER_NUM_WORKERS": str(workers),
        "WORKER_MAX_CONCURRENCY": "1000000",
        "LOG_LEVEL": "warning",
    }
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "trio_tasks", "worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


async def _drain(
    url: str, namespace: str, job_type: str, jobs: int, workers: int, processes: int, log: Path
) -> dict[str, Any]:
    """Queue ``jobs`` jobs, start ``processes`` worker processes, time them emptying the queue."""
    node_url = f"{url}?namespace={namespace}"
    broker = RedisBroker(node_url, max_concurrency=jobs + 1)
    registry = trio_tasks.TaskRegistry()
    registry.register(job_type, _unused)
    with trio.fail_after(60):
        async with trio_tasks.open_processor(registry, broker=broker, workers=0) as producer:
            for first in range(0, jobs, _SUBMIT_BATCH):
                count = min(_SUBMIT_BATCH, jobs - first)
                await producer.submit_many([JobRequest(type=job_type)] * count)
            spawned = time.time()
            started = [_spawn_worker(node_url, workers, log) for _ in range(processes)]
            try:
                while True:
                    totals = await broker.totals()
                    if totals.get("completed", 0) + totals.get("failed", 0) >= jobs:
                        break
                    for process in started:
                        if process.poll() is not None:
                            raise RuntimeError(
                                f"worker exited with {process.returncode}: see {log}"
                            )
                    await trio.sleep(_POLL)
                detected = time.time()
            finally:
                await trio.to_thread.run_sync(stop_processes, started)
            assert totals.get("completed", 0) == jobs, totals
            async with coredis.Redis.from_url(url, decode_responses=True) as client:
                span = await client.eval(_SPAN, [broker.keys.finished], [broker.keys.prefix])
    first_start, last_done = float(span[0]), float(span[1])
    return {
        "jobs": jobs,
        "workers": workers,
        "processes": processes,
        "jobs_per_s": jobs / (last_done - first_start),
        "seconds": last_done - first_start,
        "startup_s": first_start - spawned,
        "spawn_to_detected_s": detected - spawned,
    }


async def _unused(ctx: trio_tasks.JobContext) -> None:
    raise AssertionError("the producer runs no jobs")


def run(quick: bool = False) -> dict[str, Any]:
    """Measure the Redis broker; reports why it was skipped when it cannot run."""
    if shutil.which("redis-server") is None:
        return {"skipped": "redis-server is not installed"}
    repeat = 1 if quick else 3
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as logs, _redis_server() as url:
        log = Path(logs) / "workers.log"
        results["latency"] = trio.run(_latency, url, 300 if quick else 1000)
        cases = (("noop", 5_000, 10), ("sleep", 2_000, 100))
        run_id = 0
        for job_type, jobs, workers in cases:
            for processes in (1, 2):
                runs = []
                for _ in range(repeat):
                    run_id += 1
                    runs.append(
                        trio.run(_drain, url, f"b{run_id}", job_type, jobs, workers, processes, log)
                    )
                runs.sort(key=lambda r: r["jobs_per_s"])
                median = dict(runs[len(runs) // 2])
                median["runs_jobs_per_s"] = [round(r["jobs_per_s"]) for r in runs]
                results[f"{job_type}_{processes}p"] = median
    return results


if __name__ == "__main__":
    import json
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    print(json.dumps(run("--quick" in sys.argv), indent=2))
