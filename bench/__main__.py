"""Run the benchmark suite, print one table and write ``bench/results.json``.

``python -m bench [--quick] [--only inprocess,http,redis]`` (``nox -s bench`` runs it all).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _events, _handlers, _http, _inprocess, _redis

RESULTS = Path(__file__).parent / "results.json"

SECTIONS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "inprocess": _inprocess.run,
    "handlers": _handlers.run,
    "http": _http.run,
    "redis": _redis.run,
    "events": _events.run,
}


def _machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, figure, target, verdict) rows for whatever sections ran."""
    rows: list[tuple[str, str, str, str]] = []

    def row(name: str, figure: str, target: str, ok: bool | None) -> None:
        verdict = "" if ok is None else ("met" if ok else "MISSED")
        rows.append((name, figure, target, verdict))

    inp = results.get("inprocess")
    if inp:
        for w in (10, 100):
            d = inp[f"drain_{w}w"]
            row(
                f"drain {d['jobs']:,} no-op jobs, {w} workers",
                f"{d['jobs_per_s']:,.0f}/s = {d['ratio']:.0%} of bare Trio "
                f"({d['bare_trio_per_s']:,.0f}/s)",
                ">= 60% (10 workers)",
                d["ratio"] >= 0.60 if w == 10 else None,
            )
        log = inp.get("logging_info_10w")
        if log:
            row(
                "serve/worker logging: no-op drain at info (default) vs warning, 10 workers",
                f"{log['info_per_s']:,.0f}/s vs {log['warning_per_s']:,.0f}/s = {log['ratio']:.0%}",
                ">= 70%",
                log["ratio"] >= 0.70,
            )
        for key, label in (
            ("sleep_10ms_100w", "system clock"),
            ("sleep_10ms_precise", "PreciseClock"),
        ):
            d = inp[key]
            row(
                f"10 ms jobs, 100 workers ({label})",
                f"{d['jobs_per_s']:,.0f}/s = {d['ratio']:.0%} of 10,000/s"
                + (f"; bare Trio {d['bare_ratio']:.0%}" if "bare_ratio" in d else ""),
                ">= 90%",
                d["ratio"] >= 0.90,
            )
        lat = inp["latency_memory"]
        row(
            "submit-to-start latency, memory",
            f"p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms",
            "p50 < 1 ms",
            lat["p50_ms"] < 1.0,
        )
        mem = inp["memory_per_job"]
        row(
            f"memory per queued job ({mem['queued']:,} queued)",
            f"{mem['bytes']:.0f} bytes",
            "<= 1024 bytes",
            mem["bytes"] <= 1024,
        )
        for w in (10, 100):
            d = inp.get(f"sqlite_drain_{w}w")
            if d:
                row(
                    f"SQLite: drain {d['jobs']:,} no-op jobs, {w} workers",
                    f"{d['jobs_per_s']:,.0f}/s = {d['ratio']:.0%} of memory "
                    f"({d['memory_per_s']:,.0f}/s)",
                    ">= 50% of memory",
                    d["ratio"] >= 0.50,
                )
        lat = inp.get("latency_sqlite")
        if lat:
            row(
                "submit-to-start latency, SQLite",
                f"p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms",
                "(context)",
                None,
            )
        soak = inp.get("sqlite_soak")
        if soak:
            row(
                f"SQLite file size, {soak['seconds']:.0f} s soak, RESULT_TTL "
                f"{soak['result_ttl']:.0f} s",
                f"{soak['max_after_one_ttl'] / 1e6:.1f} MB at most after one TTL, "
                f"{soak['last_bytes'] / 1e6:.1f} MB at the end ({soak['jobs_per_s']:,.0f} jobs/s)",
                "bounded",
                soak["last_bytes"] <= 1.5 * soak["max_after_one_ttl"],
            )
    handlers = results.get("handlers")
    if handlers:
        row(
            "one middleware layer, no-op jobs",
            f"{handlers['middleware_cost_us_per_job']:.2f} µs per job "
            f"({handlers['noop_with_one_middleware_jobs_per_s']:,} vs "
            f"{handlers['noop_jobs_per_s']:,} jobs/s)",
            "(context)",
            None,
        )
        row(
            "process-isolated no-op job, 2 processes",
            f"{handlers['isolated_noop_jobs_per_s']:,} jobs/s = "
            f"{handlers['isolated_noop_ms_per_job_per_process']:.2f} ms per job per process",
            "(context)",
            None,
        )
    http = results.get("http")
    if http:
        bare, ours = http["bare_post"], http["serve_post"]
        row(
            f"POST /jobs, {_http.CONNECTIONS} keep-alive connections",
            f"{ours['requests_per_s']:,.0f} req/s, p99 {ours['p99_ms']:.1f} ms = "
            f"{http['post_ratio']:.0%} of bare Quart-Trio ({bare['requests_per_s']:,.0f} req/s, "
            f"p99 {bare['p99_ms']:.1f} ms)",
            ">= 80% of bare",
            http["post_ratio"] >= 0.80,
        )
        timer = http["bare_timer_post"]
        row(
            "  same, against bare app with idle timer working",
            f"{http['post_ratio_idle_timer']:.0%} of {timer['requests_per_s']:,.0f} req/s "
            f"(p99 {timer['p99_ms']:.1f} ms)",
            "(context)",
            None,
        )
        if "sqlite_post_ratio" in http:
            row(
                "  same, SQLite broker",
                f"{http['serve_sqlite_post']['requests_per_s']:,.0f} req/s = "
                f"{http['sqlite_post_ratio']:.0%} of the memory broker's",
                ">= 90% of memory",
                http["sqlite_post_ratio"] >= 0.90,
            )
        batch, bare_batch = http["serve_batch"], http["bare_batch"]
        row(
            "POST /jobs/batch, 100 jobs per batch",
            f"{batch['jobs_per_s']:,.0f} jobs/s (bare app: {bare_batch['requests_per_s']:,.0f} "
            "batches/s)",
            ">= 20,000 jobs/s",
            batch["jobs_per_s"] >= 20_000,
        )
    redis = results.get("redis")
    if redis and not redis.get("skipped"):
        lat = redis["latency"]
        row(
            "submit-to-start latency, Redis",
            f"p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms",
            "p50 < 1 ms",
            lat["p50_ms"] < 1.0,
        )
        for batch, target in ((1, 10_000), (1_000, 50_000)):
            d = redis.get(f"enqueue_batch_{batch}")
            if d:
                how = "one by one (submit)" if batch == 1 else f"submit_many of {batch:,}"
                row(
                    f"Redis: enqueue {d['jobs']:,} jobs {how}, no worker",
                    f"{d['jobs_per_s']:,.0f} jobs/s",
                    f">= {target:,} jobs/s",
                    d["jobs_per_s"] >= target,
                )
        for key, label in (
            ("noop", "no-op jobs, 10 workers"),
            ("sleep", "10 ms jobs, 100 workers"),
        ):
            for procs in (1, 2, 4):
                d = redis.get(f"{key}_{procs}p")
                if d is None:
                    continue
                row(
                    f"Redis {d['jobs']:,} {label}, {procs} worker process(es)",
                    f"{d['jobs_per_s']:,.0f} jobs/s; per job: Redis CPU "
                    f"{d['redis_cpu_us_per_job']:.0f} µs, {d['commands_per_job']:.1f} commands, "
                    f"{d['fcalls_per_job']:.2f} FCALL",
                    ">= 5,000 jobs/s" if procs == 1 else "more than 1 process",
                    d["jobs_per_s"] >= 5_000
                    if procs == 1
                    else d["jobs_per_s"] > redis[f"{key}_1p"]["jobs_per_s"],
                )
        replicas = redis.get("replicas")
        if replicas:
            for required in (0, 1):
                lat, d = replicas[f"latency_wait{required}"], replicas[f"noop_1p_wait{required}"]
                row(
                    f"Redis + 1 replica, BROKER_MIN_REPLICAS={required}",
                    f"latency p50 {lat['p50_ms']:.2f} ms; "
                    f"no-op drain {d['jobs_per_s']:,.0f} jobs/s",
                    "(cost of WAIT)",
                    None,
                )
        for masters, d in sorted((redis.get("cluster") or {}).items()):
            row(
                f"Redis Cluster {masters}, no-op, 3 namespaces, 1 process each",
                f"{d['jobs_per_s']:,.0f} jobs/s",
                "(context)",
                None,
            )
    elif redis:
        row("Redis", f"skipped: {redis['skipped']}", "", None)
    events = results.get("events")
    if events:
        row(
            f"no-op jobs over HTTP, {events['clients']} clients on GET /events (deflate)",
            f"{events['events']:,.0f} vs {events['none']:,.0f} jobs/s = "
            f"{events['events_ratio']:.0%} ({events['events_sent_mb_per_s']:.0f} MB/s sent, "
            f"{events['events_dropped']} dropped)",
            "drop < 10%",
            events["events_ratio"] > 0.90,
        )
        for key, label in (
            ("events_one", "  same, 1 client"),
            ("events_plain", f"  same, {events['clients']} clients without compression"),
            ("events_full", f"  same, {events['clients']} clients of full records (detail=full)"),
            ("job_events", f"  same, {events['clients']} clients on one job's events each"),
        ):
            row(
                label,
                f"{events[key]:,.0f} jobs/s = {events[key + '_ratio']:.0%} "
                f"({events[key + '_sent_mb_per_s']:.0f} MB/s sent)",
                "(context)",
                None,
            )
    return rows


def _print_table(rows: list[tuple[str, str, str, str]]) -> None:
    widths = [
        max(len(r[i]) for r in [("measure", "figure", "target", ""), *rows]) for i in range(4)
    ]
    header = ("measure", "figure", "target", "")
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip())


def main() -> None:
    """Parse arguments, run the sections, print and save the results."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    args = parser.parse_args()
    # Nothing configured: the library's default logging (the stdlib `trio_tasks` logger with a
    # NullHandler), what an embedding program gets; servers run with their defaults (info).
    results: dict[str, Any] = {"machine": _machine(), "quick": args.quick}
    for name in args.only.split(","):
        started = time.perf_counter()
        print(f"[bench] {name}…", file=sys.stderr, flush=True)
        results[name] = SECTIONS[name](args.quick)
        print(f"[bench] {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    rows = _rows(results)
    results["table"] = [
        dict(zip(("measure", "figure", "target", "verdict"), r, strict=True)) for r in rows
    ]
    _print_table(rows)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
