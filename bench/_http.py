"""HTTP benchmarks: ``POST /jobs`` and ``POST /jobs/batch`` against real servers."""

from __future__ import annotations

import json
import statistics
import tempfile
from typing import Any

import trio

from ._load import LoadResult, build_request, run_load
from ._servers import free_port, running, serve_argv, serve_env

CONNECTIONS = 50
ROUNDS = 3


def _submit_load(port: int, total: int) -> LoadResult:
    return trio.run(
        lambda: run_load(
            port,
            build_request("POST", "/jobs?type=noop&priority=high"),
            connections=CONNECTIONS,
            total=total,
            max_seconds=60,
        )
    )


def _batch_load(port: int, batches: int) -> LoadResult:
    body = json.dumps([{"type": "noop", "payload": {"i": i}} for i in range(100)]).encode()
    return trio.run(
        lambda: run_load(
            port,
            build_request("POST", "/jobs/batch", body),
            connections=4,
            total=batches,
            max_seconds=60,
        )
    )


def _figures(result: LoadResult, jobs_per_request: int = 1) -> dict[str, Any]:
    return {
        "requests": result.requests,
        "errors": result.errors,
        "statuses": {str(k): v for k, v in result.statuses.items()},
        "requests_per_s": result.rate,
        "jobs_per_s": result.rate * jobs_per_request,
        "p50_ms": result.percentile(0.50) * 1e3,
        "p99_ms": result.percentile(0.99) * 1e3,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Measure the bare Quart-Trio ceiling and ``trio-tasks serve`` (memory and SQLite
    brokers) under the same load.

    The four servers run side by side and are loaded in turn, ``ROUNDS`` times: single runs
    vary by 20% or more on a shared 2-core machine, so each figure is the median round and each
    ratio the median of the per-round ratios.
    """
    total = 5_000 if quick else 10_000
    batches = 100 if quick else 400
    rounds = 1 if quick else ROUNDS
    bare, timer, serve, sqlite = free_port(), free_port(), free_port(), free_port()
    samples: dict[str, list[dict[str, Any]]] = {
        "bare_post": [],
        "bare_timer_post": [],
        "serve_post": [],
        "serve_sqlite_post": [],
    }
    ratios: list[float] = []
    timer_ratios: list[float] = []
    sqlite_ratios: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="trio-tasks-bench-") as directory,
        running(["-m", "bench._bare_app", str(bare)], bare),
        running(["-m", "bench._bare_app", str(timer), "idle-timer"], timer),
        running(serve_argv(), serve, serve_env(serve)),
        running(
            serve_argv(), sqlite, serve_env(sqlite, BROKER_URL=f"sqlite:///{directory}/jobs.db")
        ),
    ):
        for port in (bare, timer, serve, sqlite):
            _submit_load(port, 1000)  # warm-up
        for _ in range(rounds):
            round_ = {
                key: _figures(_submit_load(port, total))
                for key, port in (
                    ("bare_post", bare),
                    ("bare_timer_post", timer),
                    ("serve_post", serve),
                    ("serve_sqlite_post", sqlite),
                )
            }
            for key, figures in round_.items():
                samples[key].append(figures)
            ours = round_["serve_post"]["requests_per_s"]
            ratios.append(ours / round_["bare_post"]["requests_per_s"])
            timer_ratios.append(ours / round_["bare_timer_post"]["requests_per_s"])
            sqlite_ratios.append(round_["serve_sqlite_post"]["requests_per_s"] / ours)
        results: dict[str, Any] = {key: _median_run(runs) for key, runs in samples.items()}
        results["bare_batch"] = _figures(_batch_load(bare, batches), 100)
        results["serve_batch"] = _figures(_batch_load(serve, batches), 100)
        results["serve_sqlite_batch"] = _figures(_batch_load(sqlite, batches), 100)
    results["rounds"] = rounds
    results["post_ratio"] = statistics.median(ratios)
    results["post_ratio_idle_timer"] = statistics.median(timer_ratios)
    # POST /jobs on SQLite against the memory broker (issue 15: within 10%).
    results["sqlite_post_ratio"] = statistics.median(sqlite_ratios)
    return results


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate (its latencies belong to the same run)."""
    return sorted(runs, key=lambda r: r["requests_per_s"])[len(runs) // 2]
