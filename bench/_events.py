"""The cost of live events (issue 13): job throughput of a real ``trio-tasks serve`` while 100
clients follow ``GET /events``, against none.

The server runs no-op jobs submitted in batches over HTTP (``POST /jobs/batch``) by this
process; the jobs completed per second come from ``GET /stats``. The SSE clients run in a
process of their own (``python -m bench._events clients …``): raw Trio sockets that read
everything and count what they got (a dropped client would lighten the server's load: the run
reports drops). Runs with and without clients are interleaved, ``ROUNDS`` times; the figures
are medians. A second measure has 100 clients follow one job each (``GET /jobs/{id}/events``).
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any

import trio

from ._load import build_request, run_load
from ._servers import ROOT, free_port, running, serve_argv, serve_env, stop_processes

CLIENTS = 100
ROUNDS = 3
#: Seconds of load per measure.
WINDOW = 4.0
BATCH = 100


def _stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


def _throughput(port: int, seconds: float) -> dict[str, Any]:
    """Jobs completed per second while batches of no-op jobs are submitted for ``seconds``."""
    body = json.dumps([{"type": "noop", "payload": {"i": i}} for i in range(BATCH)]).encode()
    before, started = _stats(port), time.perf_counter()
    load = trio.run(
        lambda: run_load(
            port,
            build_request("POST", "/jobs/batch", body),
            connections=2,
            total=10**9,
            max_seconds=seconds,
        )
    )
    after, elapsed = _stats(port), time.perf_counter() - started
    # Let the queue drain before the next measure (not counted).
    deadline = time.monotonic() + 30
    while _stats(port)["queue_size"] and time.monotonic() < deadline:
        time.sleep(0.1)
    return {
        "jobs_per_s": (after["jobs_completed"] - before["jobs_completed"]) / elapsed,
        "submitted_per_s": load.rate * BATCH,
        "refused": load.errors,
    }


def _start_clients(port: int, paths: list[str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench._events", "clients", str(port), *paths],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        stop_processes([process])
        raise RuntimeError(f"SSE clients did not start: {line!r}")
    return process


def _stop_clients(process: subprocess.Popen[str]) -> dict[str, Any]:
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _submit_followed(port: int, count: int) -> list[str]:
    """``count`` jobs due in an hour (each followed by one client: it sees no event)."""
    body = json.dumps([{"type": "sleep", "delay": "1h"} for _ in range(count)]).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/jobs/batch",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return [item["job_id"] for item in json.loads(answer.read())["jobs"]]


def run(quick: bool = False) -> dict[str, Any]:
    """Throughput with 0 and with :data:`CLIENTS` clients on ``GET /events`` (and on one job's
    stream each), interleaved, medians of :data:`ROUNDS`."""
    rounds = 1 if quick else ROUNDS
    window = 2.0 if quick else WINDOW
    port = free_port()
    samples: dict[str, list[dict[str, Any]]] = {"none": [], "events": [], "job_events": []}
    clients: list[dict[str, Any]] = []
    with running(serve_argv(), port, serve_env(port)):
        _throughput(port, 1.0)  # warm-up
        followed = [f"/jobs/{job_id}/events" for job_id in _submit_followed(port, CLIENTS)]
        for _ in range(rounds):
            samples["none"].append(_throughput(port, window))
            sse = _start_clients(port, ["/events"] * CLIENTS)
            try:
                samples["events"].append(_throughput(port, window))
            finally:
                clients.append(_stop_clients(sse))
            sse = _start_clients(port, followed)
            try:
                samples["job_events"].append(_throughput(port, window))
            finally:
                _stop_clients(sse)
    results: dict[str, Any] = {
        key: statistics.median(s["jobs_per_s"] for s in runs) for key, runs in samples.items()
    }
    results["events_ratio"] = statistics.median(
        e["jobs_per_s"] / n["jobs_per_s"]
        for e, n in zip(samples["events"], samples["none"], strict=True)
    )
    results["job_events_ratio"] = statistics.median(
        e["jobs_per_s"] / n["jobs_per_s"]
        for e, n in zip(samples["job_events"], samples["none"], strict=True)
    )
    results["clients"] = CLIENTS
    results["rounds"] = rounds
    results["samples"] = samples
    # What the server sent every client of /events together, per second, and any drop.
    results["sent_mb_per_s"] = statistics.median(c["bytes"] / c["seconds"] / 1e6 for c in clients)
    results["dropped"] = sum(c["dropped"] for c in clients)
    return results


# -- the clients' process ------------------------------------------------------------------


async def _follow(port: int, path: str, totals: dict[str, int], ready: trio.Event) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            head += chunk
        totals["connected"] += 1
        if totals["connected"] == totals["wanted"]:
            ready.set()
        tail = b""
        while chunk := await stream.receive_some(1 << 20):
            totals["bytes"] += len(chunk)
            # Chunked transfer encoding splits nothing we look for often: a look at the seam.
            if b"event: dropped" in tail + chunk[:32] or b"event: dropped" in chunk:
                totals["dropped"] += 1
            tail = chunk[-32:]


async def _clients(port: int, paths: list[str]) -> None:
    totals = {"bytes": 0, "dropped": 0, "connected": 0, "wanted": len(paths)}
    ready = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            for path in paths:
                nursery.start_soon(_follow, port, path, totals, ready)
            await ready.wait()
            started = time.perf_counter()
            totals["bytes"] = 0
            print("ready", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()
    totals["seconds"] = time.perf_counter() - started  # type: ignore[assignment]
    print(json.dumps(totals), flush=True)


if __name__ == "__main__" and sys.argv[1:2] == ["clients"]:
    trio.run(_clients, int(sys.argv[2]), sys.argv[3:])
