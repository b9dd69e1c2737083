"""Periodic jobs end to end: the HTTP routes, two nodes on a real Redis, and the CLI against a
real ``trio-tasks serve`` with ``SCHEDULES_FILE`` (the example file)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
from _server import ROOT, ServerProcess

import trio_tasks
from trio_tasks import JobContext, TaskRegistry
from trio_tasks.http import create_app

EXAMPLE = ROOT / "examples" / "schedules.toml"


async def test_routes_list_pause_and_resume(autojump_clock: trio.testing.MockClock) -> None:
    registry = TaskRegistry()

    @registry.task("t")
    async def handler(ctx: JobContext) -> None: ...

    registry.schedule("every-second", job_type="t", every="1s")
    registry.schedule("nightly", job_type="t", cron="30 2 * * *", timezone="Europe/Berlin")
    async with trio_tasks.open_processor(registry, workers=1) as processor:
        client = create_app(processor).test_client()
        await trio.sleep(2.5)
        answer = await client.get("/schedules")
        assert answer.status_code == 200
        every, nightly = (await answer.get_json())["schedules"]
        assert (nightly["name"], nightly["expression"], nightly["timezone"]) == (
            "nightly",
            "30 2 * * *",
            "Europe/Berlin",
        )
        assert nightly["last_job_id"] is None
        assert nightly["paused"] is False
        assert every["expression"] == "every 1s"
        assert every["last_job_id"].startswith("sched:every-second:")
        paused = await client.post("/schedules/every-second/pause")
        assert paused.status_code == 200
        assert (await paused.get_json())["paused"] is True
        before = len(await processor.list_jobs())
        await trio.sleep(3)
        assert len(await processor.list_jobs()) == before
        resumed = await client.post("/schedules/every-second/resume")
        assert (await resumed.get_json())["paused"] is False
        await trio.sleep(2)
        assert len(await processor.list_jobs()) >= before + 2
        missing = await client.post("/schedules/nope/pause")
        assert missing.status_code == 404
        assert "nope" in (await missing.get_json())["error"]
        processor.shutdown(grace=0)


@pytest.mark.redis
async def test_two_nodes_on_redis_run_each_tick_once(redis_url: str) -> None:
    runs: Counter[str] = Counter()

    def registry() -> TaskRegistry:
        tasks = TaskRegistry()

        @tasks.task("tick")
        async def tick(ctx: JobContext) -> None:
            runs[ctx.job.id] += 1

        tasks.schedule("fast", job_type="tick", every="200ms", retries=0)
        return tasks

    first_tick = last_tick = 0.0
    async with (
        trio_tasks.open_processor(registry(), broker=redis_url, workers=2) as one,
        trio_tasks.open_processor(registry(), broker=redis_url, workers=2) as two,
    ):
        await trio.sleep(0.3)
        first_tick = time.time()
        await trio.sleep(2.0)
        # A pause on one node holds the other too.
        await one.broker.set_schedule_paused("fast", True)
        last_tick = time.time()
        await trio.sleep(0.8)
        state = await two.broker.schedule_state("fast")
        assert state.paused
        jobs = await two.list_jobs(type="tick", limit=1000)
        await one.broker.set_schedule_paused("fast", False)
    ticks = sorted(job.id for job in jobs)
    assert runs
    assert set(runs.values()) == {1}, runs  # each tick ran once, on one node
    expected = registry().schedules["fast"]
    # Every tick between the two moments was submitted: none lost, none doubled.
    tick = expected.next_tick(first_tick)
    while tick < last_tick - 0.25:
        assert expected.job_id(tick) in ticks
        tick = expected.next_tick(tick)
    assert not [j for j in jobs if j.created_at > last_tick + 0.5], "ran while paused"
    assert len(ticks) == len(set(ticks))


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_tasks", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.slow
def test_cli_schedules_against_a_real_server(tmp_path: Path) -> None:
    env = {"SCHEDULES_FILE": str(EXAMPLE), "SERVER_PORT": "0", "SERVER_HOST": "127.0.0.1"}
    with ServerProcess("serve", env=env) as node:
        url = node.wait_ready(30)
        record: dict[str, Any] = node.wait_for_log("scheduled job submitted", schedule="heartbeat")
        assert record["job_id"].startswith("sched:heartbeat:")
        listed = _cli("schedules", "--url", url)
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split() == [
            "NAME",
            "EXPRESSION",
            "TIMEZONE",
            "NEXT",
            "RUN",
            "PAUSED",
            "LAST",
            "JOB",
        ]
        by_name = {line.split()[0]: line for line in lines[1:]}
        assert set(by_name) == {"heartbeat", "nightly-report", "sync-inbox"}
        assert "30 2 * * *" in by_name["nightly-report"]
        assert "Europe/Berlin" in by_name["nightly-report"]
        assert "sched:heartbeat:" in by_name["heartbeat"]


def test_a_bad_schedules_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[x]\njob_type = "email"\ncron = "* * *"\n')
    result = _cli("serve", "--schedules-file", str(bad))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--schedules-file" in result.stderr
    assert "5-field" in result.stderr
