"""HTTP benchmarks: ``POST /jobs`` and ``POST /jobs/batch`` against real servers."""

from __future__ import annotations

import json
from typing import Any

import trio

from ._load import LoadResult, build_request, run_load
from ._servers import free_port, running, serve_argv, serve_env

CONNECTIONS = 50


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
    """Measure the bare Quart-Trio ceiling and ``trio-tasks serve`` under the same load."""
    total = 5_000 if quick else 20_000
    batches = 100 if quick else 400
    results: dict[str, Any] = {}
    port = free_port()
    with running(["-m", "bench._bare_app", str(port)], port):
        _submit_load(port, 1000)  # warm-up
        results["bare_post"] = _figures(_submit_load(port, total))
        results["bare_batch"] = _figures(_batch_load(port, batches), 100)
    port = free_port()
    with running(["-m", "bench._bare_app", str(port), "idle-timer"], port):
        _submit_load(port, 1000)
        results["bare_timer_post"] = _figures(_submit_load(port, total))
    port = free_port()
    with running(serve_argv(), port, serve_env(port)):
        _submit_load(port, 1000)
        results["serve_post"] = _figures(_submit_load(port, total))
        results["serve_batch"] = _figures(_batch_load(port, batches), 100)
    served = results["serve_post"]["requests_per_s"]
    results["post_ratio"] = served / results["bare_post"]["requests_per_s"]
    results["post_ratio_idle_timer"] = served / results["bare_timer_post"]["requests_per_s"]
    return results
