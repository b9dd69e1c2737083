"""The cost of live events (issue 13): job throughput of a real ``trio-tasks serve`` while 100
clients follow ``GET /events``, against none.

The server runs no-op jobs submitted in batches over HTTP (``POST /jobs/batch``) by this
process; the jobs completed per second come from ``GET /stats``. The SSE clients run in a
process of their own (``python -m bench._events clients …``): raw Trio sockets that read
everything and count what they got (a dropped client would lighten the server's load: the run
reports drops). Each measure with clients follows a run without, and its ratio is to that run
(the server slows a little as a run goes on); ``ROUNDS`` rounds, the figures are medians. The
clients ask for ``deflate`` as browsers do (one of them decodes everything; the others only
read, as a remote client's work is not this machine's); other measures have one such client,
100 that take no compression, 100 that ask for every event whole (``?detail=full``), and 100
that follow one job each (``GET /jobs/{id}/events``).
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import zlib
from typing import Any

import h11
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


def _start_clients(port: int, paths: list[str], encoding: str = "deflate") -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench._events", "clients", str(port), encoding, *paths],
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


#: The measures with clients: (key, number of clients, path, Accept-Encoding); the path
#: ``None`` is one job's stream per client.
MEASURES = (
    ("events", CLIENTS, "/events", "deflate"),
    ("events_one", 1, "/events", "deflate"),
    ("events_plain", CLIENTS, "/events", "identity"),
    ("events_full", CLIENTS, "/events?detail=full", "deflate"),
    ("job_events", CLIENTS, None, "deflate"),
)


def run(quick: bool = False) -> dict[str, Any]:
    """Throughput with no client, then with each of :data:`MEASURES`: :data:`CLIENTS` clients
    on ``GET /events`` asking for deflate as browsers do, one such client (what every job's
    events cost whatever the number of readers), :data:`CLIENTS` clients that take no
    compression, and :data:`CLIENTS` clients on one job's stream each; interleaved, medians of
    :data:`ROUNDS`."""
    rounds = 1 if quick else ROUNDS
    window = 2.0 if quick else WINDOW
    port = free_port()
    samples: dict[str, list[dict[str, Any]]] = {"none": [], **{m[0]: [] for m in MEASURES}}
    # The run without clients just before each measure: the server slows a little as a run
    # goes on (its heap grows), so each ratio compares neighbours.
    before: dict[str, list[dict[str, Any]]] = {m[0]: [] for m in MEASURES}
    clients: dict[str, list[dict[str, Any]]] = {m[0]: [] for m in MEASURES}
    with running(serve_argv(), port, serve_env(port)):
        _throughput(port, 1.0)  # warm-up
        followed = [f"/jobs/{job_id}/events" for job_id in _submit_followed(port, CLIENTS)]
        for _ in range(rounds):
            for key, count, path, encoding in MEASURES:
                none = _throughput(port, window)
                samples["none"].append(none)
                before[key].append(none)
                paths = followed[:count] if path is None else [path] * count
                sse = _start_clients(port, paths, encoding)
                try:
                    samples[key].append(_throughput(port, window))
                finally:
                    clients[key].append(_stop_clients(sse))
    results: dict[str, Any] = {
        key: statistics.median(s["jobs_per_s"] for s in runs) for key, runs in samples.items()
    }
    for key, *_ in MEASURES:
        results[f"{key}_ratio"] = statistics.median(
            e["jobs_per_s"] / n["jobs_per_s"]
            for e, n in zip(samples[key], before[key], strict=True)
        )
        # What the server sent all the clients together per second (on the wire, and the
        # text before compression as one client saw it), and any drop.
        results[f"{key}_sent_mb_per_s"] = statistics.median(
            c["bytes"] / c["seconds"] / 1e6 for c in clients[key]
        )
        results[f"{key}_dropped"] = sum(c["dropped"] for c in clients[key])
    results["events_text_mb_per_s"] = statistics.median(
        c["text_bytes"] / c["seconds"] / 1e6 for c in clients["events"]
    )
    results["clients"] = CLIENTS
    results["rounds"] = rounds
    results["samples"] = samples
    return results


# -- the clients' process ------------------------------------------------------------------


async def _follow(
    port: int,
    path: str,
    totals: dict[str, int],
    ready: trio.Event,
    encoding: str,
    decode: bool,
) -> None:
    """Follow ``path`` asking for ``encoding`` (``deflate``, as browsers do, or ``identity``)
    and count the bytes received. With ``decode`` (one client of all) also undo the chunked
    transfer coding (h11) and the compression, and count the events: the stream must be valid.
    The others only read, as a remote client's cost is not this machine's. A stream that ends
    before the run does was dropped."""
    connection = h11.Connection(h11.CLIENT)
    headers = [("Host", "127.0.0.1"), ("Accept", "text/event-stream")]
    headers.append(("Accept-Encoding", encoding))
    request = h11.Request(method="GET", target=path, headers=headers)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    decompressor: Any = None
    async with stream:
        await stream.send_all(connection.send(request) + connection.send(h11.EndOfMessage()))  # type: ignore[operator]
        while True:
            chunk = await stream.receive_some(1 << 20)
            if totals["counting"]:
                totals["bytes"] += len(chunk)
            if not chunk:
                totals["dropped"] += totals["counting"]
                return
            if connection.their_state is h11.SEND_RESPONSE or decode:
                connection.receive_data(chunk)
                while (event := connection.next_event()) is not h11.NEED_DATA:
                    if isinstance(event, h11.Response):
                        coding = dict(event.headers).get(b"content-encoding", b"")
                        decompressor = zlib.decompressobj() if coding == b"deflate" else None
                        totals["connected"] += 1
                        if totals["connected"] == totals["wanted"]:
                            ready.set()
                        if not decode:
                            break
                    elif isinstance(event, h11.Data):
                        text = bytes(event.data)
                        if decompressor is not None:
                            text = decompressor.decompress(text)
                        if totals["counting"]:
                            totals["text_bytes"] += len(text)
                            totals["events"] += text.count(b"\n\n")
                    elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                        break


async def _clients(port: int, encoding: str, paths: list[str]) -> None:
    totals = {
        "bytes": 0,
        "text_bytes": 0,
        "dropped": 0,
        "connected": 0,
        "wanted": len(paths),
        "counting": 0,
        "events": 0,
    }
    ready = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            for number, path in enumerate(paths):
                nursery.start_soon(_follow, port, path, totals, ready, encoding, number == 0)
            await ready.wait()
            started = time.perf_counter()
            totals["counting"] = 1
            print("ready", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()
    totals["seconds"] = time.perf_counter() - started  # type: ignore[assignment]
    print(json.dumps(totals), flush=True)


if __name__ == "__main__" and sys.argv[1:2] == ["clients"]:
    trio.run(_clients, int(sys.argv[2]), sys.argv[3], sys.argv[4:])
