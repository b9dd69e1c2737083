"""The built-in demo registry: the seed's job types with simulated work.

A fresh ``trio-tasks serve`` uses it, so the seed's ``curl`` examples work without writing a
handler. As with the seed, any other job type is accepted too: a fallback handler runs the
same generic simulation for it. Each job sleeps for a random short time and returns a small
result. Two payload keys steer a job, for demonstrations and tests:

- ``"duration"``: how long the work takes (``"2s"``, ``0.25``), instead of a random time;
- ``"fail"``: ``true`` fails every attempt; an integer ``n`` fails the first ``n`` attempts and
  then succeeds, which shows retries with backoff.
"""

from __future__ import annotations

import random
from typing import Any

import trio

from ._context import JobContext
from ._durations import format_duration, parse_duration
from ._errors import InvalidValue, PermanentError
from ._registry import TaskRegistry

#: The seed's job types, in the order its README lists them.
DEMO_JOB_TYPES = ("email", "report", "backup", "sync", "cleanup", "default")


class SimulatedFailure(Exception):
    """The failure a demo job was asked for with ``"fail"`` in its payload."""


def demo_registry(
    *,
    min_duration: float = 0.05,
    max_duration: float = 0.5,
    rng: random.Random | None = None,
) -> TaskRegistry:
    """Return a registry handling :data:`DEMO_JOB_TYPES`, and any other type through its
    fallback handler, with simulated work.

    Each job sleeps for a uniformly random time between ``min_duration`` and ``max_duration``
    seconds (unless its payload gives ``"duration"``) and returns
    ``{"type": ..., "simulated": True, "duration": "123ms"}``.

    Raises:
        InvalidValue: the durations are negative or out of order.
    """
    if not 0 <= min_duration <= max_duration:
        raise InvalidValue(
            f"expected 0 <= min_duration <= max_duration, got {min_duration!r}, {max_duration!r}"
        )
    pick = (rng or random.Random()).uniform
    tasks = TaskRegistry()

    async def simulate(ctx: JobContext) -> dict[str, Any]:
        payload = ctx.payload
        seconds = _duration(payload) if "duration" in payload else None
        if seconds is None:
            seconds = pick(min_duration, max_duration)
        await trio.sleep(seconds)
        _maybe_fail(payload.get("fail"), ctx.attempt)
        return {"type": ctx.job.type, "simulated": True, "duration": format_duration(seconds)}

    for job_type in DEMO_JOB_TYPES:
        tasks.register(job_type, simulate)
    # The seed runs its generic simulation for any type: its benchmarks submit "benchmark".
    tasks.fallback(simulate)
    return tasks


def _duration(payload: dict[str, Any]) -> float:
    try:
        return parse_duration(payload["duration"], name="payload duration")
    except InvalidValue as exc:
        # Retrying cannot fix a malformed payload.
        raise PermanentError(str(exc)) from None


def _maybe_fail(fail: object, attempt: int) -> None:
    if fail is True:
        raise SimulatedFailure(f"simulated failure on attempt {attempt}")
    if isinstance(fail, int) and not isinstance(fail, bool) and attempt <= fail:
        raise SimulatedFailure(f"simulated failure on attempt {attempt} of the first {fail}")
