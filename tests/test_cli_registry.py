"""Which handlers a node runs: the built-in demo registry, or ``TASKS_APP=module:registry``."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

import trio_tasks
from trio_tasks._demo import DEMO_JOB_TYPES
from trio_tasks.cli import _UsageError, load_registry, main

USER_MODULE = """
import trio_tasks

registry = trio_tasks.TaskRegistry()

@registry.task("resize")
async def resize(ctx):
    return {"width": ctx.payload["width"] // 2}

def make_registry():
    return registry

empty = trio_tasks.TaskRegistry()
not_a_registry = 42
"""


@pytest.fixture
def user_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "user_tasks_for_test.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_tasks_for_test"


def test_no_app_means_the_demo_job_types_of_the_seed() -> None:
    registry = load_registry(None)
    assert registry.names() == sorted(["email", "report", "backup", "sync", "cleanup", "default"])
    assert set(DEMO_JOB_TYPES) == set(registry.names())


@pytest.mark.parametrize("attribute", ["registry", "make_registry"])
def test_tasks_app_loads_a_registry_or_a_factory(user_app: str, attribute: str) -> None:
    registry = load_registry(f"{user_app}:{attribute}")
    assert registry.names() == ["resize"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "TASKS_APP='no_colon': expected module:attribute"),
        ("no_such_module_xyz:registry", "cannot import 'no_such_module_xyz': No module named"),
        ("{app}:missing", "has no attribute 'missing'"),
        ("{app}:not_a_registry", "expected a trio_tasks.TaskRegistry, got int"),
        ("{app}:empty", "the registry has no job types"),
    ],
)
def test_a_bad_tasks_app_is_a_usage_error(user_app: str, spec: str, message: str) -> None:
    with pytest.raises(_UsageError, match="TASKS_APP=") as caught:
        load_registry(spec.format(app=user_app))
    assert message in str(caught.value)


def test_a_bad_app_flag_exits_2_naming_the_flag(
    user_app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--app", f"{user_app}:missing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"trio-tasks: error: --app='{user_app}:missing': ")
    assert len(err.splitlines()) == 1


async def test_demo_jobs_simulate_work_for_a_random_short_time(
    autojump_clock: trio.abc.Clock,
) -> None:
    registry = trio_tasks.demo_registry(min_duration=1, max_duration=2, rng=random.Random(7))
    async with trio_tasks.open_processor(registry, workers=6) as processor:
        jobs = [await processor.submit(job_type) for job_type in DEMO_JOB_TYPES]
        done = [await processor.wait(job.id) for job in jobs]
    for job in done:
        assert job.status is trio_tasks.JobStatus.COMPLETED
        assert job.result["type"] == job.type
        assert job.result["simulated"] is True
        assert job.completed_at is not None
        assert job.started_at is not None
        assert 1 <= job.completed_at - job.started_at <= 2 + 1e-6


async def test_demo_payload_chooses_duration_and_failures(autojump_clock: trio.abc.Clock) -> None:
    registry = trio_tasks.demo_registry()
    async with trio_tasks.open_processor(
        registry, workers=3, retry_attempts=3, retry_delay="1s", retry_max_delay="1s"
    ) as processor:
        slow = await processor.submit("report", {"duration": "90s"})
        flaky = await processor.submit("sync", {"fail": 2, "duration": 0})
        broken = await processor.submit("email", {"fail": True, "duration": 0})
        bad = await processor.submit("email", {"duration": "a while"})
        slow, flaky, broken, bad = [await processor.wait(j.id) for j in (slow, flaky, broken, bad)]
    assert slow.status is trio_tasks.JobStatus.COMPLETED
    assert slow.result["duration"] == "1m30s"
    assert flaky.status is trio_tasks.JobStatus.COMPLETED
    assert flaky.attempts == 3
    assert broken.status is trio_tasks.JobStatus.FAILED
    assert broken.attempts == 4
    assert broken.error is not None
    assert broken.error.type == "SimulatedFailure"
    # A malformed payload cannot be fixed by retrying: it fails at once.
    assert bad.status is trio_tasks.JobStatus.FAILED
    assert bad.attempts == 1
    assert bad.error is not None
    assert "payload duration" in bad.error.message


def test_demo_registry_refuses_reversed_durations() -> None:
    with pytest.raises(trio_tasks.InvalidValue):
        trio_tasks.demo_registry(min_duration=2, max_duration=1)
