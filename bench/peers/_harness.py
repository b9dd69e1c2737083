"""The harness: one private Redis, every system through the same scenarios, interleaved rounds,
medians; a table on stdout, progress on stderr, ``results.json`` beside this file.

Scenarios (``COUNTS`` gives the sizes):

* ``enqueue``: one producer process submits jobs one by one (sequential awaits or calls); jobs/s.
* ``drain_noop_c10``, ``drain_sleep_c100``, ``drain_sleep_c10``: the jobs are queued first; then
  the worker is spawned, and the rate is jobs / (the last result seen - the worker's spawn).
* ``latency``: one job is queued, the worker is spawned (spawn → that job's result is the
  ``first_job_s`` figure), then the caller times submit-and-wait round trips (p50, p99).

"The last result seen": see :func:`bench.peers._client.watch`. The observer is the producer
process itself, looking results up through the system's own API.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .._servers import process_env
from . import _redis
from ._systems import BY_NAME, SYSTEMS, System

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = Path(__file__).resolve().parent / "results.json"
#: How long one client role may take before the run counts as failed.
TIMEOUT = 240.0


@dataclass(frozen=True)
class Counts:
    """The sizes of the scenarios."""

    enqueue: int = 2_000
    noop_c10: int = 3_000
    sleep_c100: int = 1_500
    sleep_c10: int = 1_000
    latency: int = 300

    @classmethod
    def scaled(cls, jobs: int) -> Counts:
        """Every scenario with ``jobs`` jobs (the smoke test, ``--jobs``)."""
        return cls(jobs, jobs, jobs, jobs, jobs)


#: ``--quick``: one round of these.
QUICK = Counts(1_000, 1_000, 500, 200, 100)
#: ``--full``: the sizes issue #11 quotes (about 2.5 times as long as the default).
FULL = Counts(5_000, 5_000, 2_000, 1_000, 500)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.peers [--rounds N] [--quick] [--only a,b] [--jobs N] [--output P]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 1)")
    parser.add_argument("--quick", action="store_true", help="small counts, one round")
    parser.add_argument("--only", default="", help="comma-separated systems (default: all)")
    parser.add_argument("--full", action="store_true", help="the sizes issue #11 quotes")
    parser.add_argument("--jobs", type=int, default=0, help="every scenario with this many jobs")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where results.json goes")
    options = parser.parse_args(argv)
    # A SIGTERM (nox interrupted) unwinds like Ctrl-C: the private Redis and workers are stopped.
    signal.signal(signal.SIGTERM, _terminate)
    names = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown systems {unknown}; known: {[s.name for s in SYSTEMS]}")
    systems = [BY_NAME[name] for name in names] if names else list(SYSTEMS)
    rounds = options.rounds or (1 if options.quick else 3)
    counts = QUICK if options.quick else FULL if options.full else Counts()
    if options.jobs:
        counts = Counts.scaled(options.jobs)
    results = run(systems, rounds, counts)
    options.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(table(results))
    progress(f"wrote {options.output}")
    failed = [
        f"{name} {scenario}"
        for name, figures in results["results"].items()
        for scenario, figure in figures.items()
        if "error" in figure
    ]
    if failed:
        progress(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def progress(message: str) -> None:
    """One progress line on stderr."""
    print(f"[bench.peers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(systems: list[System], rounds: int, counts: Counts) -> dict[str, Any]:
    """Run every scenario for every system, ``rounds`` times, interleaved; medians."""
    logs = Path(tempfile.mkdtemp(prefix="bench-peers-logs-"))
    started = time.monotonic()
    with _redis.redis_server() as port:
        runner = Runner(port, logs)
        versions: dict[str, str] = {}
        usable: list[System] = []
        for system in systems:
            try:
                versions[system.name] = runner.client(system, "version")[0]["version"]
                usable.append(system)
            except RunFailed as error:
                versions[system.name] = f"unavailable: {error}"
                progress(f"{system.name}: unavailable ({error})")
        scenarios = [
            ("enqueue", lambda s: runner.enqueue(s, counts.enqueue)),
            ("drain_noop_c10", lambda s: runner.drain(s, counts.noop_c10, 10, "noop")),
            ("drain_sleep_c100", lambda s: runner.drain(s, counts.sleep_c100, 100, "sleep")),
            ("drain_sleep_c10", lambda s: runner.drain(s, counts.sleep_c10, 10, "sleep")),
            ("latency", lambda s: runner.latency(s, counts.latency)),
        ]
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            s.name: {name: [] for name, _ in scenarios} for s in usable
        }
        for number in range(rounds):
            # Round-robin: every system once per scenario and round, the order rotated per round.
            order = (
                usable[number % len(usable) :] + usable[: number % len(usable)] if usable else []
            )
            for name, scenario in scenarios:
                for system in order:
                    try:
                        figure = scenario(system)
                    except RunFailed as error:
                        figure = {"error": str(error)}
                    runs[system.name][name].append(figure)
                    progress(f"round {number + 1}/{rounds} {system.name} {name}: {brief(figure)}")
        redis_version = _redis.version(port)
    elapsed = time.monotonic() - started
    progress(f"done in {elapsed:.0f} s; worker logs in {logs}")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "redis": redis_version,
        "versions": versions,
        "rounds": rounds,
        "counts": counts.__dict__,
        "seconds": round(elapsed, 1),
        "deviations": {s.name: list(s.deviations) for s in systems},
        "results": {name: {k: summarise(v) for k, v in by.items()} for name, by in runs.items()},
    }


def brief(figure: dict[str, Any]) -> str:
    """A progress line's figures."""
    if "error" in figure:
        return f"ERROR {figure['error']}"
    parts = [f"{key}={value:,.4g}" for key, value in figure.items() if isinstance(value, float)]
    return " ".join(parts)


class RunFailed(Exception):
    """A client or worker failed, or took longer than :data:`TIMEOUT`."""


class Runner:
    """Runs one scenario of one system at a time on the Redis at ``port``."""

    def __init__(self, port: int, logs: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.logs = logs
        self.count = 0

    def env(self, system: System, concurrency: int) -> dict[str, str]:
        """The environment of a system's client and worker."""
        return {
            **process_env(),
            "BENCH_PEERS_URL": self.url,
            "BENCH_PEERS_CONCURRENCY": str(concurrency),
            # trio-tasks' worker reads its settings from the environment.
            "BROKER_URL": self.url,
            "TASKS_APP": "bench.peers._trio_tasks:tasks",
            "WORKER_NUM_WORKERS": str(concurrency),
        }

    def log(self, system: System, what: str) -> IO[bytes]:
        self.count += 1
        return (self.logs / f"{self.count:03d}-{system.name}-{what}.log").open("wb")

    def start_client(self, system: System, role: str, *args: object) -> subprocess.Popen[str]:
        with self.log(system, f"client-{role}") as stderr:
            return subprocess.Popen(
                [
                    system.python(),
                    "-m",
                    "bench.peers._client",
                    system.module,
                    role,
                    *map(str, args),
                ],
                cwd=ROOT,
                env=self.env(system, 10),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )

    def client(self, system: System, role: str, *args: object) -> list[dict[str, Any]]:
        """Run a client role to its end; its JSON lines."""
        process = self.start_client(system, role, *args)
        try:
            out, _ = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise RunFailed(f"{role} timed out") from None
        if process.returncode != 0:
            raise RunFailed(f"{role} exited with {process.returncode}: see {self.logs}")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def enqueue(self, system: System, count: int) -> dict[str, Any]:
        """Sequential submissions from one producer process (no worker)."""
        self.flush()
        before = _redis.cpu_seconds(self.port)
        (figure,) = self.client(system, "enqueue", count)
        redis_cpu = _redis.cpu_seconds(self.port) - before
        return {
            "jobs_per_s": float(figure["jobs_per_s"]),
            "redis_cpu_us_per_job": redis_cpu / (count + 100) * 1e6,
        }

    def drain(self, system: System, count: int, concurrency: int, kind: str) -> dict[str, Any]:
        """Queued jobs, then a worker spawned; spawn → last result."""
        figure = self.observe(system, concurrency, "drain", count, concurrency, kind)
        seconds = figure["end"] - figure["spawned"]
        return {
            "jobs_per_s": count / seconds,
            "seconds": seconds,
            "worker_cpu_s": figure["worker_cpu_s"],
            "redis_cpu_us_per_job": figure["redis_cpu_s"] / count * 1e6,
            "stragglers": float(figure["stragglers"]),
        }

    def latency(self, system: System, count: int) -> dict[str, Any]:
        """Spawn → first job, then submit → result round trips against the running worker."""
        figure = self.observe(system, 10, "latency", count)
        samples = sorted(figure["latency"])
        return {
            "first_job_s": figure["end"] - figure["spawned"],
            "p50_ms": percentile(samples, 0.50) * 1e3,
            "p99_ms": percentile(samples, 0.99) * 1e3,
        }

    def observe(self, system: System, concurrency: int, role: str, *args: object) -> dict[str, Any]:
        """A client that queues jobs and watches them, and a worker spawned when they are queued."""
        self.flush()
        client = self.start_client(system, role, *args)
        worker: subprocess.Popen[bytes] | None = None
        deadline = time.monotonic() + TIMEOUT
        try:
            assert client.stdout is not None
            ready = client.stdout.readline()
            if not ready or not json.loads(ready).get("ready"):
                raise RunFailed(f"{role}: the client did not queue its jobs: see {self.logs}")
            redis_before = _redis.cpu_seconds(self.port)
            with self.log(system, f"worker-c{concurrency}") as output:
                spawned = time.monotonic()
                worker = subprocess.Popen(
                    system.worker_argv(concurrency),
                    cwd=ROOT,
                    env=self.env(system, concurrency),
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            end_line = self.read_line(client, worker, deadline)
            worker_cpu = tree_cpu_seconds(worker.pid)
            redis_cpu = _redis.cpu_seconds(self.port) - redis_before
            figure = json.loads(end_line)
            if role == "latency":
                figure.update(json.loads(self.read_line(client, worker, deadline)))
            client.wait(max(1.0, deadline - time.monotonic()))
            if client.returncode != 0:
                raise RunFailed(f"{role}: client exited with {client.returncode}")
            return {
                **figure,
                "spawned": spawned,
                "worker_cpu_s": worker_cpu,
                "redis_cpu_s": redis_cpu,
            }
        except subprocess.TimeoutExpired:
            raise RunFailed(f"{role}: timed out") from None
        finally:
            if client.poll() is None:
                client.kill()
            client.communicate()
            if worker is not None:
                stop(worker)

    def read_line(
        self, client: subprocess.Popen[str], worker: subprocess.Popen[bytes], deadline: float
    ) -> str:
        """The client's next line; fails if the worker dies or time runs out first."""
        assert client.stdout is not None
        # A blocking readline is fine: the client always ends (its own watch is bounded by the
        # deadline below through the kill in ``observe``'s ``finally``) — guard with a timer.
        import threading

        timer = threading.Timer(max(0.0, deadline - time.monotonic()), client.kill)
        timer.start()
        try:
            line = client.stdout.readline()
        finally:
            timer.cancel()
        if not line:
            code = worker.poll()
            why = "timed out" if code is None else f"worker exited with {code}"
            raise RunFailed(f"no result ({why}): see {self.logs}")
        return line

    def flush(self) -> None:
        """Start every run on an empty Redis."""
        _redis.command(self.port, "FLUSHALL")


def stop(worker: subprocess.Popen[bytes]) -> None:
    """Kill the worker's process group at once: shutdown is not measured, and a graceful stop
    costs up to 10 s for some peers (a pool's processes go with the group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and its live descendants, plus the children they
    have already reaped (read from ``/proc``; 0.0 where there is none)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # The command name may hold spaces and parentheses: split after the last ')'.
            stats[int(entry)] = text[text.rindex(")") + 2 :].split()
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        fields = stats.get(pid)
        if fields is None:
            continue
        # utime, stime, cutime, cstime are fields 14-17 of stat (11-14 after the name).
        total += sum(int(value) for value in fields[11:15])
        todo.extend(children.get(pid, []))
    return total / tick


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted ``samples``."""
    index = min(len(samples) - 1, max(0, round(fraction * len(samples) + 0.5) - 1))
    return samples[index]


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the runs that worked; an error if none did."""
    good = [run for run in runs if "error" not in run]
    if not good:
        return {"error": runs[0]["error"] if runs else "not run", "runs": runs}
    keys = [key for key, value in good[0].items() if isinstance(value, float)]
    summary: dict[str, Any] = {key: statistics.median(run[key] for run in good) for key in keys}
    summary["runs"] = runs
    return summary


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


#: The table's rows: (label, scenario, key, format).
ROWS = (
    ("enqueue one by one, jobs/s", "enqueue", "jobs_per_s", "{:,.0f}"),
    ("drain no-op C=10, jobs/s (from spawn)", "drain_noop_c10", "jobs_per_s", "{:,.0f}"),
    ("drain 10 ms C=100, jobs/s (from spawn)", "drain_sleep_c100", "jobs_per_s", "{:,.0f}"),
    ("drain 10 ms C=10, jobs/s (ideal 1,000)", "drain_sleep_c10", "jobs_per_s", "{:,.0f}"),
    ("submit → result p50, ms", "latency", "p50_ms", "{:.2f}"),
    ("submit → result p99, ms", "latency", "p99_ms", "{:.2f}"),
    ("spawn → first job done, s", "latency", "first_job_s", "{:.2f}"),
    ("worker CPU, no-op drain, s", "drain_noop_c10", "worker_cpu_s", "{:.2f}"),
    ("Redis CPU per job, no-op drain, µs", "drain_noop_c10", "redis_cpu_us_per_job", "{:.0f}"),
    ("Redis CPU per job, enqueue, µs", "enqueue", "redis_cpu_us_per_job", "{:.0f}"),
    ("worker CPU, 10 ms C=100 drain, s", "drain_sleep_c100", "worker_cpu_s", "{:.2f}"),
)


def table(results: dict[str, Any]) -> str:
    """The medians as a Markdown table, a column per system."""
    names = list(results["results"])
    lines = [
        "| measure | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for label, scenario, key, fmt in ROWS:
        cells = []
        for name in names:
            figure = results["results"][name].get(scenario, {})
            if "error" in figure:
                cells.append("failed: " + figure["error"][:60])
            elif key in figure:
                cells.append(fmt.format(figure[key]))
            else:
                cells.append("-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    versions = ", ".join(f"{name} {results['versions'][name]}" for name in results["versions"])
    lines.append("")
    lines.append(
        f"Medians of {results['rounds']} interleaved rounds, {results['date']}, "
        f"{results['machine']['cpus']} CPUs ({results['machine']['cpu']}), Python "
        f"{results['machine']['python']}, Redis {results['redis']}; {versions}."
    )
    return "\n".join(lines)
