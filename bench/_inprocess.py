"""In-process benchmarks of the engine with the memory broker and the SQLite broker (no HTTP, no
Redis)."""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
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


@contextmanager
def _sqlite_url() -> Iterator[str]:
    """``sqlite:///`` URL of a journal in a directory of its own, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="trio-tasks-bench-") as directory:
        yield f"sqlite:///{directory}/jobs.db"


async def _drain(n: int, workers: int, job_type: str, broker: str = "memory://") -> float:
    """Queue ``n`` jobs before any worker runs, then time the workers emptying the queue."""
    async with trio_tasks.open_processor(
        _registry(), workers=workers, max_concurrency=n, result_max_jobs=1000, broker=broker
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


async def limited_drain(n: int, workers: int, broker: str = "memory://") -> dict[str, float]:
    """The cost of a limited type: ``n`` no-op jobs of a type with ``concurrency=5`` queued
    with ``n`` of a type without limits, drained by ``workers`` workers; the jobs per second
    of each type (each timed from the start to its own last job) and of the whole."""
    tasks = trio_tasks.TaskRegistry()
    tasks.register("capped", _noop, concurrency=5)
    tasks.register("noop", _noop)
    async with trio_tasks.open_processor(
        tasks, workers=workers, max_concurrency=2 * n, result_max_jobs=1000, broker=broker
    ) as processor:
        requests = [JobRequest(type=t) for _ in range(n) for t in ("capped", "noop")]
        admissions = await processor.submit_many(requests)
        start = time.perf_counter()
        ends: dict[str, float] = {}

        async def drain(job_type: str) -> None:
            for admission in admissions[::-1]:
                if admission.job.type == job_type:
                    await processor.wait(admission.job.id)
                    break
            # Jobs of one type start in FIFO order: once its last is done, all are.
            ends[job_type] = time.perf_counter() - start

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, "capped")
            nursery.start_soon(drain, "noop")
        stats = await processor.stats()
        assert stats.completed == 2 * n, f"{stats.completed} of {2 * n} jobs completed"
    return {
        "jobs": 2 * n,
        "workers": workers,
        "jobs_per_s": 2 * n / max(ends.values()),
        "capped_per_s": n / ends["capped"],
        "unlimited_per_s": n / ends["noop"],
    }


def _logged_drain(n: int, workers: int, level: str) -> float:
    """:func:`_drain` with logging as ``serve`` and ``worker`` set it up: JSON lines at
    ``level`` into a file (a supervisor's log), flushed every 50 ms."""
    from trio_tasks._json_log import flush_logs_periodically

    async def drain() -> float:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flush_logs_periodically)
            rate = await _drain(n, workers, "noop")
            nursery.cancel_scope.cancel()
        return rate

    with (
        tempfile.TemporaryDirectory(prefix="trio-tasks-bench-") as directory,
        open(Path(directory) / "node.log", "w") as out,
    ):
        trio_tasks.configure_logging(level, "json", out)
        try:
            return trio.run(drain)
        finally:
            _unconfigure_logging()


def _unconfigure_logging() -> None:
    """Back to the library's default: nothing configured (stdlib ``trio_tasks`` logger with
    a NullHandler, so lines below warning are dropped at once)."""
    import logging

    import structlog

    from trio_tasks import _json_log

    structlog.reset_defaults()
    _json_log.use(None)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(False)


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


def _sqlite_drain(n: int, workers: int) -> float:
    with _sqlite_url() as url:
        return trio.run(_drain, n, workers, "noop", url)


async def _sqlite_latency(samples: int) -> dict[str, float]:
    from trio_tasks.brokers import make_broker

    with _sqlite_url() as url:
        broker = make_broker(url, trio_tasks.Config())
        return await measure_latency(samples, broker, warmup=50)


async def _sqlite_soak(seconds: float, ttl: float) -> dict[str, Any]:
    """Batches of 100 no-op jobs, submitted and run back to back for ``seconds`` with a
    retention of ``ttl``: the journal's size (file and write-ahead log) every ``ttl / 2``.

    ``RESULT_TTL`` is an hour by default; this is the same hour with the clock sped up, so the
    file must stop growing after about one ``ttl``.
    """
    with _sqlite_url() as url:
        path = Path(url.removeprefix("sqlite:///"))
        sizes: list[int] = []
        jobs = 0
        async with trio_tasks.open_processor(
            _registry(), workers=10, broker=url, result_ttl=ttl, result_max_jobs=1_000_000
        ) as processor:
            start = next_sample = trio.current_time()
            while trio.current_time() - start < seconds:
                admissions = await processor.submit_many([JobRequest(type="noop")] * 100)
                await processor.wait(admissions[-1].job.id)
                jobs += 100
                if trio.current_time() >= next_sample:
                    sizes.append(_journal_bytes(path))
                    next_sample += ttl / 2
        return {
            "seconds": seconds,
            "result_ttl": ttl,
            "jobs": jobs,
            "jobs_per_s": jobs / seconds,
            "sizes_bytes": sizes,
            "max_after_one_ttl": max(sizes[2:] or sizes),
            "last_bytes": sizes[-1],
        }


def _journal_bytes(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with suppress(FileNotFoundError):
            total += os.path.getsize(f"{path}{suffix}")
    return total


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
    for workers in (10, 100):
        pairs = []
        for _ in range(1 if quick else 3):
            memory = trio.run(_drain, n, workers, "noop")
            pairs.append((_sqlite_drain(n, workers) / memory, memory))
        ratio, memory = sorted(pairs)[len(pairs) // 2]
        results[f"sqlite_drain_{workers}w"] = {
            "jobs": n,
            "workers": workers,
            "jobs_per_s": ratio * memory,
            "memory_per_s": memory,
            "ratio": ratio,
        }
    # serve / worker logging: JSON lines at info (their default) against the same at warning.
    pairs = []
    for _ in range(3 if quick else 5):
        warning = _logged_drain(n, 10, "warning")
        info = _logged_drain(n, 10, "info")
        pairs.append((info / warning, info, warning))
    ratio, info, warning = sorted(pairs)[len(pairs) // 2]
    results["logging_info_10w"] = {
        "jobs": n,
        "info_per_s": info,
        "warning_per_s": warning,
        "ratio": ratio,
    }
    # The cost of a limited type (concurrency=5) drained beside a type without limits,
    # against the plain no-op drain of the same number of jobs.
    for workers in (10, 100):
        plain = statistics.median(trio.run(_drain, 2 * n // 4, workers, "noop") for _ in range(3))
        runs = sorted(
            (trio.run(limited_drain, n // 4, workers) for _ in range(3)),
            key=lambda r: r["jobs_per_s"],
        )
        limited = runs[1]
        results[f"limited_drain_{workers}w"] = {
            **limited,
            "plain_per_s": plain,
            "ratio": limited["jobs_per_s"] / plain,
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
    results["latency_sqlite"] = trio.run(_sqlite_latency, 500 if quick else 2000)
    results["sqlite_soak"] = trio.run(_sqlite_soak, 6.0 if quick else 30.0, 2.0 if quick else 5.0)
    results["memory_per_job"] = {"bytes": trio.run(_bytes_per_queued_job, n), "queued": n}
    return results
