"""Redis broker benchmarks, against ``redis-server``s of their own on free ports.

- ``latency``: submit-to-start latency on an idle system (an in-process processor on the Redis
  broker, one job at a time, as ``latency_memory`` in ``_inprocess.py``).
- ``noop_1p`` … ``sleep_4p``: a producer (an in-process processor with ``workers=0``) queues
  every job first; then 1, 2 or 4 ``trio-tasks worker`` processes are started and drain them.
  Completion is detected by polling the namespace's counters every 20 ms; the rate is measured
  from the first job's ``started_at`` to the last job's ``completed_at`` (both from the job
  records in Redis, written by the workers on this machine's clock), so the processes' start-up
  (imports, connecting) is not counted. ``startup_s`` says how long that start-up took.
  Each drain also reports what it cost Redis, from ``INFO`` before and after: its CPU time
  per job (``redis_cpu_us_per_job``: user + sys of the server process), ``FCALL``s per job
  (``fcalls_per_job``: most round trips are one) and commands per job including those the Lua
  functions ran (``commands_per_job``, from ``INFO commandstats``).
- ``replicas``: the cost of ``BROKER_MIN_REPLICAS=1`` (a master with one replica): latency and
  the no-op drain by 1 process, with 0 and with 1 replica required.
- ``cluster``: a no-op drain on a Redis Cluster of 1 and of 3 masters, with the jobs spread
  over 3 namespaces (one worker process each); on 3 masters each namespace has its own.

Each drain is run ``repeat`` times (3, or 1 with ``--quick``) and the median is reported.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import coredis
import trio

import trio_tasks
from trio_tasks import JobRequest
from trio_tasks.brokers._redis import RedisBroker
from trio_tasks.brokers._redis_client import make_client

from ._inprocess import measure_latency
from ._servers import ROOT, free_port, process_env, redis_server, stop_processes

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
def _replicated() -> Iterator[int]:
    """A master with one replica in sync; yields the master's port."""
    with redis_server() as master, redis_server("--replicaof", "127.0.0.1", str(master)) as rep:
        trio.run(_wait_synced, rep)
        yield master


async def _wait_synced(port: int) -> None:
    with trio.fail_after(20):
        async with coredis.Redis("127.0.0.1", port, decode_responses=True) as client:
            while True:
                if (await client.info("replication")).get("master_link_status") == "up":
                    return
                await trio.sleep(0.05)


def _cluster_port() -> int:
    while True:
        port = free_port()
        if port + 10000 <= 65535:
            return port


@contextmanager
def _cluster(masters: int) -> Iterator[list[int]]:
    """A Redis Cluster of ``masters`` masters (no replicas); yields their ports."""
    with ExitStack() as stack:
        ports = [
            stack.enter_context(
                redis_server(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    port=port,
                )
            )
            for port in [_cluster_port() for _ in range(masters)]
        ]
        if masters == 1:
            trio.run(_add_all_slots, ports[0])
        else:
            cli = shutil.which("redis-cli")
            assert cli is not None
            nodes = [f"127.0.0.1:{port}" for port in ports]
            subprocess.run(
                [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=30,
            )
        trio.run(_wait_cluster_ok, ports)
        yield ports


async def _add_all_slots(port: int) -> None:
    async with coredis.Redis("127.0.0.1", port, decode_responses=True) as client:
        await client.cluster_addslotsrange([(0, 16383)])


async def _wait_cluster_ok(ports: list[int]) -> None:
    with trio.fail_after(30):
        for port in ports:
            async with coredis.Redis("127.0.0.1", port, decode_responses=True) as client:
                while True:
                    if (await client.cluster_info()).get("cluster_state") == "ok":
                        break
                    await trio.sleep(0.05)


async def _slot_owner(ports: list[int], namespace: str) -> int:
    """The port of the master holding ``namespace`` (a cluster of ``ports``)."""
    async with coredis.Redis("127.0.0.1", ports[0], decode_responses=True) as client:
        slot = await client.cluster_keyslot(f"tt:{{{namespace}}}:x")
        for (start, end), nodes in (await client.cluster_slots()).items():
            if start <= slot <= end:
                return int(nodes[0]["port"])
    raise RuntimeError(f"no master for slot {slot}")


async def _redis_figures(ports: list[int]) -> dict[str, float]:
    """CPU seconds, FCALLs and all commands (Lua's included) so far, summed over ``ports``."""
    cpu = fcalls = calls = 0.0
    for port in ports:
        async with coredis.Redis("127.0.0.1", port, decode_responses=True) as client:
            info = await client.info("cpu")
            cpu += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
            for name, stat in (await client.info("commandstats")).items():
                calls += float(stat["calls"])
                if name == "cmdstat_fcall":
                    fcalls += float(stat["calls"])
    return {"cpu": cpu, "fcalls": fcalls, "calls": calls}


async def _latency(url: str, samples: int, min_replicas: int = 0) -> dict[str, float]:
    """Submit-to-start latency on an idle node, one job at a time."""
    with trio.fail_after(60):
        broker = RedisBroker(
            f"{url}?namespace=latency{min_replicas}",
            max_concurrency=10_000,
            min_replicas=min_replicas,
        )
        return await measure_latency(samples, broker, warmup=20)


def _spawn_worker(url: str, workers: int, log: Path, min_replicas: int) -> subprocess.Popen[bytes]:
    env = {
        **process_env(),
        "BROKER_URL": url,
        "BROKER_MIN_REPLICAS": str(min_replicas),
        "TASKS_APP": "bench.app:tasks",
        "WORKER_NUM_WORKERS": str(workers),
        "WORKER_MAX_CONCURRENCY": "1000000",
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
    url: str,
    ports: list[int],
    namespaces: list[str],
    job_type: str,
    jobs: int,
    workers: int,
    processes: int,
    log: Path,
    min_replicas: int = 0,
) -> dict[str, Any]:
    """Queue ``jobs`` jobs (split evenly over ``namespaces``), start ``processes`` worker
    processes (spread over the namespaces), time them emptying the queues."""
    per_namespace = jobs // len(namespaces)
    jobs = per_namespace * len(namespaces)
    registry = trio_tasks.TaskRegistry()
    registry.register(job_type, _unused)
    brokers: list[RedisBroker] = []
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for namespace in namespaces:
                broker = RedisBroker(
                    f"{url}?namespace={namespace}",
                    max_concurrency=jobs + 1,
                    min_replicas=min_replicas,
                )
                brokers.append(broker)
                await nursery.start(_produce, registry, broker, job_type, per_namespace)
            before = await _redis_figures(ports)
            spawned = time.time()
            started = [
                _spawn_worker(
                    f"{url}?namespace={namespaces[i % len(namespaces)]}", workers, log, min_replicas
                )
                for i in range(processes)
            ]
            try:
                while True:
                    done = 0
                    for broker in brokers:
                        totals = await broker.totals()
                        done += totals.get("completed", 0) + totals.get("failed", 0)
                    if done >= jobs:
                        break
                    for process in started:
                        if process.poll() is not None:
                            raise RuntimeError(
                                f"worker exited with {process.returncode}: see {log}"
                            )
                    await trio.sleep(_POLL)
                detected = time.time()
                after = await _redis_figures(ports)
            finally:
                await trio.to_thread.run_sync(stop_processes, started)
            spans = []
            made = make_client(
                url, client_name="bench", connect_timeout=5, stream_timeout=30, max_idle=60
            )
            client = made.client  # coredis' (made before open(), which opens it)
            async with made.open():
                for broker in brokers:
                    spans.append(
                        await client.eval(_SPAN, [broker.keys.finished], [broker.keys.prefix])
                    )
            nursery.cancel_scope.cancel()
    first_start = min(float(span[0]) for span in spans)
    last_done = max(float(span[1]) for span in spans)
    return {
        "jobs": jobs,
        "workers": workers,
        "processes": processes,
        "namespaces": len(namespaces),
        "jobs_per_s": jobs / (last_done - first_start),
        "seconds": last_done - first_start,
        "startup_s": first_start - spawned,
        "spawn_to_detected_s": detected - spawned,
        "redis_cpu_us_per_job": (after["cpu"] - before["cpu"]) / jobs * 1e6,
        "fcalls_per_job": (after["fcalls"] - before["fcalls"]) / jobs,
        "commands_per_job": (after["calls"] - before["calls"]) / jobs,
    }


async def _produce(
    registry: trio_tasks.TaskRegistry,
    broker: RedisBroker,
    job_type: str,
    jobs: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Queue ``jobs`` jobs through a producer (no workers), then keep it running."""
    async with trio_tasks.open_processor(registry, broker=broker, workers=0) as producer:
        for first in range(0, jobs, _SUBMIT_BATCH):
            count = min(_SUBMIT_BATCH, jobs - first)
            await producer.submit_many([JobRequest(type=job_type)] * count)
        task_status.started()
        await trio.sleep_forever()


async def _enqueue(url: str, jobs: int, batch: int) -> dict[str, Any]:
    """A producer (``workers=0``, every default) queues ``jobs`` jobs into a namespace of its
    own, one call per ``batch`` jobs (``processor.submit`` when ``batch`` is 1, else
    ``submit_many``)."""
    registry = trio_tasks.TaskRegistry()
    registry.register("noop", _unused)
    broker = f"{url}?namespace=enqueue-{uuid.uuid4().hex[:8]}"
    async with trio_tasks.open_processor(registry, broker=broker, workers=0) as producer:
        await producer.submit("noop")  # connected, library loaded
        request = JobRequest(type="noop")
        started = time.perf_counter()
        if batch == 1:
            for _ in range(jobs):
                await producer.submit("noop")
        else:
            for _ in range(jobs // batch):
                await producer.submit_many([request] * batch)
        elapsed = time.perf_counter() - started
        producer.shutdown(grace=0)
    return {"jobs": jobs, "batch": batch, "jobs_per_s": jobs / elapsed}


async def _unused(ctx: trio_tasks.JobContext) -> None:
    raise AssertionError("the producer runs no jobs")


def _median(repeat: int, call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    runs = sorted(
        (trio.run(call, *args, **kwargs) for _ in range(repeat)), key=lambda r: r["jobs_per_s"]
    )
    median = dict(runs[len(runs) // 2])
    median["runs_jobs_per_s"] = [round(r["jobs_per_s"]) for r in runs]
    return median


def run(quick: bool = False) -> dict[str, Any]:
    """Measure the Redis broker; reports why it was skipped when it cannot run."""
    if shutil.which("redis-server") is None:
        return {"skipped": "redis-server is not installed"}
    repeat = 1 if quick else 3
    results: dict[str, Any] = {}
    run_id = 0

    def namespace() -> str:
        nonlocal run_id
        run_id += 1
        return f"b{run_id}"

    with tempfile.TemporaryDirectory(prefix="bench-workers-") as logs:
        log = Path(logs) / "workers.log"
        with redis_server() as port:
            url = f"redis://127.0.0.1:{port}/0"
            results["latency"] = trio.run(_latency, url, 300 if quick else 1000)
            for batch, jobs in ((1, 5_000), (1_000, 50_000)):
                results[f"enqueue_batch_{batch}"] = _median(repeat, _enqueue, url, jobs, batch)
            for job_type, jobs, workers in (("noop", 5_000, 10), ("sleep", 2_000, 100)):
                for processes in (1, 2, 4):
                    results[f"{job_type}_{processes}p"] = _median(
                        repeat,
                        _fresh_drain(url, [port], namespace, job_type, jobs, workers, processes),
                        log,
                    )
        with _replicated() as port:
            url = f"redis://127.0.0.1:{port}/0"
            replicas: dict[str, Any] = {}
            for required in (0, 1):
                replicas[f"latency_wait{required}"] = trio.run(
                    _latency, url, 300 if quick else 1000, required
                )
                replicas[f"noop_1p_wait{required}"] = _median(
                    repeat,
                    _fresh_drain(url, [port], namespace, "noop", 5_000, 10, 1, required),
                    log,
                )
            results["replicas"] = replicas
        if shutil.which("redis-cli") is not None:
            cluster: dict[str, Any] = {}
            for masters in (1, 3):
                with _cluster(masters) as ports:
                    url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
                    cluster[f"noop_{masters}m"] = _median(
                        repeat, _spread_drain(url, ports, "noop", 6_000, 10, 3), log
                    )
            results["cluster"] = cluster
    return results


def _fresh_drain(
    url: str,
    ports: list[int],
    namespace: Any,
    job_type: str,
    jobs: int,
    workers: int,
    processes: int,
    min_replicas: int = 0,
) -> Any:
    """A drain in a fresh namespace each time it runs."""

    async def call(log: Path) -> dict[str, Any]:
        return await _drain(
            url, ports, [namespace()], job_type, jobs, workers, processes, log, min_replicas
        )

    return call


def _spread_drain(
    url: str, ports: list[int], job_type: str, jobs: int, workers: int, processes: int
) -> Any:
    """A drain over ``processes`` fresh namespaces, each on a master of its own if there are
    that many masters."""
    runs = 0

    async def call(log: Path) -> dict[str, Any]:
        nonlocal runs
        runs += 1
        spread: dict[int, str] = {}
        n = 0
        while len(spread) < processes:
            n += 1
            name = f"c{len(ports)}r{runs}x{n}"
            owner = await _slot_owner(ports, name)
            spread.setdefault(owner if len(ports) >= processes else n, name)
        names = list(spread.values())
        return await _drain(url, ports, names, job_type, jobs, workers, processes, log)

    return call


if __name__ == "__main__":
    import json
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    print(json.dumps(run("--quick" in sys.argv), indent=2))
