"""In-process benchmarks of the engine with the memory broker (no HTTP, no Redis)."""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from typing import Any

import trio

import trio_tasks
from trio_tasks import JobRequest
from trio_tasks.brokers._base import Broker


async def _noop(ctx: trio_tasks.JobContext) -> None:
    return None


async def _sleep_10ms(ctx: trio_tasks.JobContext) -> None:
    await trio.sleep(0.010)


def _registry() -> trio_tasks.TaskRegistry:
    tasks = trio_tasks.TaskRegistry()
    tasks.register("noop", _noop)
    tasks.register("sleep", _sleep_10ms)
    return tasks


async def _bare_trio_drain(n: int, workers: int) -> float:
    """The ceiling: ``workers`` tasks reading ``n`` queued items from one memory channel, each
    item handled in a cancel scope with a deadline, as a job is."""
    send, receive = trio.open_memory_channel[int](n)
    for i in range(n):
        send.send_nowait(i)
    send.close()

    async def worker() -> None:
        async for item in receive:
            with trio.CancelScope(deadline=trio.current_time() + 300):
                await _noop(item)  # type: ignore[arg-type]

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
    return n / (time.perf_counter() - start)


async def _bare_trio_sleepers(n: int, workers: int) -> float:
    """The same 10 ms jobs run by bare Trio tasks reading a memory channel."""
    send, receive = trio.open_memory_channel[int](n)
    for i in range(n):
        send.send_nowait(i)
    send.close()

    async def worker() -> None:
        async for _ in receive:
            with trio.CancelScope(deadline=trio.current_time() + 300):
                await trio.sleep(0.010)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
    return n / (time.perf_counter() - start)


async def _drain(n: int, workers: int, job_type: str) -> float:
    """Queue ``n`` jobs before any worker runs, then time the workers emptying the queue."""
    async with trio_tasks.open_processor(
        _registry(), workers=workers, max_concurrency=n, result_max_jobs=1000
    ) as processor:
        # The memory broker never checkpoints while enqueuing: all n are queued before a worker
        # takes the first one.
        admissions = await processor.submit_many([JobRequest(type=job_type)] * n)
        start = time.perf_counter()
        # Jobs start in FIFO order, so once the last `workers` jobs are done, all are.
        for admission in admissions[-workers:]:
            await processor.wait(admission.job.id)
        elapsed = time.perf_counter() - start
        completed = (await processor.stats()).completed
        assert completed == n, f"{completed} of {n} jobs completed"
        return n / elapsed


async def measure_latency(
    samples: int, broker: Broker | None = None, warmup: int = 0
) -> dict[str, float]:
    """Submit-to-start latency on an idle processor (memory, or ``broker``), one job at a time.

    ``warmup`` jobs run first, unmeasured (connections opened, scripts loaded).
    """
    started: dict[str, float] = {}
    tasks = trio_tasks.TaskRegistry()

    @tasks.task("probe")
    async def probe(ctx: trio_tasks.JobContext) -> None:
        started[ctx.job.id] = time.perf_counter()

    latencies = []
    async with trio_tasks.open_processor(tasks, broker=broker, workers=10) as processor:
        for _ in range(warmup):
            await processor.wait((await processor.submit("probe")).id)
        for _ in range(samples):
            submitted = time.perf_counter()
            job = await processor.submit("probe")
            await processor.wait(job.id)
            latencies.append(started[job.id] - submitted)
    latencies.sort()
    return {
        "samples": samples,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1e3,
    }


async def _bytes_per_queued_job(n: int) -> float:
    """tracemalloc's count of what ``n`` queued jobs (empty payload) hold, divided by ``n``."""
    async with trio_tasks.open_processor(_registry(), workers=0, max_concurrency=n) as processor:
        requests = [JobRequest(type="noop", payload={"i": i}) for i in range(n)]
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        admissions = await processor.submit_many(requests)
        del admissions
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        # The payload dicts were built by the caller before submission; they are not counted.
        return (after - before) / n


def run(quick: bool = False) -> dict[str, Any]:
    """Run the in-process benchmarks and return their figures."""
    n = 20_000 if quick else 100_000
    results: dict[str, Any] = {}
    for workers in (10, 100):
        ratios = []
        figures = []
        for _ in range(5):
            baseline = trio.run(_bare_trio_drain, n, workers)
            ours = trio.run(_drain, n, workers, "noop")
            ratios.append(ours / baseline)
            figures.append((ours, baseline))
        best = sorted(zip(ratios, figures, strict=True))[2]  # the median of five pairs
        results[f"drain_{workers}w"] = {
            "jobs": n,
            "workers": workers,
            "jobs_per_s": best[1][0],
            "bare_trio_per_s": best[1][1],
            "ratio": best[0],
        }
    sleeping = 5_000 if quick else 20_000
    rate = trio.run(_drain, sleeping, 100, "sleep")
    bare = trio.run(_bare_trio_sleepers, sleeping, 100)
    results["sleep_10ms_100w"] = {
        "jobs": sleeping,
        "jobs_per_s": rate,
        "ideal_per_s": 10_000,
        "ratio": rate / 10_000,
        "bare_ratio": bare / 10_000,
    }
    rate = trio.run(_drain, sleeping, 100, "sleep", clock=trio_tasks.PreciseClock())
    bare = trio.run(_bare_trio_sleepers, sleeping, 100, clock=trio_tasks.PreciseClock())
    results["sleep_10ms_precise"] = {
        "jobs": sleeping,
        "jobs_per_s": rate,
        "ideal_per_s": 10_000,
        "ratio": rate / 10_000,
        "bare_ratio": bare / 10_000,
    }
    results["latency_memory"] = trio.run(measure_latency, 500 if quick else 2000)
    results["memory_per_job"] = {"bytes": trio.run(_bytes_per_queued_job, n), "queued": n}
    return results
