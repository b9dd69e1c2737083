"""What the handler options cost: one middleware layer, and a process-isolated no-op job."""

from __future__ import annotations

import statistics
import time
from typing import Any

import trio

import trio_tasks
from trio_tasks import JobRequest

from . import _isolated_handlers


async def _noop(ctx: trio_tasks.JobContext) -> None:
    return None


async def _passthrough(ctx: trio_tasks.JobContext, call_next: Any) -> Any:
    return await call_next()


def _registry(middleware: bool) -> trio_tasks.TaskRegistry:
    tasks = trio_tasks.TaskRegistry()
    tasks.register("noop", _noop)
    tasks.register("isolated", _isolated_handlers.noop, isolate="process")
    if middleware:
        tasks.middleware(_passthrough)
    return tasks


async def _drain(n: int, job_type: str, *, middleware: bool, workers: int = 10) -> float:
    async with trio_tasks.open_processor(
        _registry(middleware), workers=workers, max_concurrency=n, result_max_jobs=1000
    ) as processor:
        admissions = await processor.submit_many([JobRequest(type=job_type)] * n)
        start = time.perf_counter()
        for admission in admissions[-workers:]:
            await processor.wait(admission.job.id)
        return n / (time.perf_counter() - start)


async def _measure(quick: bool) -> dict[str, Any]:
    n = 5_000 if quick else 30_000
    plain: list[float] = []
    layered: list[float] = []
    for _ in range(3):
        plain.append(await _drain(n, "noop", middleware=False))
        layered.append(await _drain(n, "noop", middleware=True))
    isolated_n = 200 if quick else 1_000
    isolated = [await _drain(isolated_n, "isolated", middleware=False, workers=2)]
    plain_rate, layered_rate = statistics.median(plain), statistics.median(layered)
    isolated_rate = statistics.median(isolated)
    return {
        "noop_jobs_per_s": round(plain_rate),
        "noop_with_one_middleware_jobs_per_s": round(layered_rate),
        "middleware_cost_us_per_job": round((1 / layered_rate - 1 / plain_rate) * 1e6, 2),
        "isolated_noop_jobs_per_s": round(isolated_rate),
        "isolated_noop_ms_per_job_per_process": round(2 / isolated_rate * 1e3, 3),
    }


def run(quick: bool) -> dict[str, Any]:
    """Run the handler benchmarks; returns the figures."""
    return trio.run(_measure, quick)
