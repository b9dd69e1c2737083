"""The peer comparison's harness (``nox -s bench_peers``) works end to end: trio-tasks alone,
tiny counts, one round, against the harness's own private redis-server. The peers are not needed
(the harness imports none of them unless asked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
SCENARIOS = {"enqueue", "drain_noop_c10", "drain_sleep_c100", "drain_sleep_c10", "latency"}


def test_the_harness_measures_every_scenario_for_trio_tasks(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    arguments = ["--only", "trio-tasks", "--jobs", "50", "--rounds", "1", "--output", str(output)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.peers", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(output.read_text())
    assert results["versions"] == {"trio-tasks": "0.1.0"}
    assert results["counts"]["noop_c10"] == 50
    figures = results["results"]["trio-tasks"]
    assert set(figures) == SCENARIOS
    for scenario in SCENARIOS:
        assert "error" not in figures[scenario], figures[scenario]
        assert len(figures[scenario]["runs"]) == 1
    assert figures["enqueue"]["jobs_per_s"] > 0
    for drain in ("drain_noop_c10", "drain_sleep_c100", "drain_sleep_c10"):
        # Every job's result was seen, timed from the worker's spawn, with its CPU counted.
        assert figures[drain]["stragglers"] == 0
        assert figures[drain]["seconds"] > 0
        assert figures[drain]["worker_cpu_s"] > 0
        assert figures[drain]["redis_cpu_us_per_job"] > 0
    # Fifty 10 ms jobs, ten at a time, take at least 50 ms after the spawn.
    assert figures["drain_sleep_c10"]["seconds"] >= 0.05
    latency = figures["latency"]
    assert 0 < latency["p50_ms"] <= latency["p99_ms"]
    assert latency["first_job_s"] > 0
    # The table names the system and every measure; progress went to stderr.
    assert "| measure | trio-tasks |" in done.stdout
    assert "spawn → first job done" in done.stdout
    assert "round 1/1 trio-tasks drain_noop_c10" in done.stderr
