"""The Redis broker's state of periodic jobs: one hash per namespace (``RedisKeys.schedules``),
plain commands (each one atomic; no Lua needed: every field has one writer's meaning)."""

from __future__ import annotations

import json

from .._schedules import ScheduleState
from ._redis_commands import Commands
from ._redis_keys import RedisKeys


def _tick(raw: str | None) -> tuple[float | None, str | None]:
    try:
        tick, job_id = json.loads(raw) if raw is not None else (None, None)
        return (
            float(tick) if isinstance(tick, int | float) else None,
            job_id if isinstance(job_id, str) else None,
        )
    except (ValueError, TypeError):  # a hand-edited field: as if never ticked
        return None, None


async def schedule_state(client: Commands, keys: RedisKeys, name: str) -> ScheduleState:
    """The state of schedule ``name`` (the defaults when Redis has none)."""
    paused, raw = await client.hmget(keys.schedules, [f"paused:{name}", f"tick:{name}"])
    tick, job_id = _tick(raw)
    return ScheduleState(paused=paused == "1", last_tick=tick, last_job_id=job_id)


async def set_paused(client: Commands, keys: RedisKeys, name: str, paused: bool) -> None:
    """Pause or resume schedule ``name`` for every node."""
    await client.hset(keys.schedules, {f"paused:{name}": "1" if paused else "0"})


async def record_tick(
    client: Commands, keys: RedisKeys, name: str, tick: float, job_id: str | None
) -> None:
    """Keep ``tick`` (and ``job_id``, or the job id kept so far) unless a later tick is kept.

    Two nodes recording the same tick write the same value; a node far behind the others may
    rarely write an older tick over a newer one between the read and the write, which only
    makes a later catch-up look at a tick that ran already (and submits nothing new).
    """
    field = f"tick:{name}"
    kept, kept_job = _tick(await client.hget(keys.schedules, field))
    if kept is not None and kept > tick:
        return
    value = json.dumps([tick, job_id or kept_job])
    await client.hset(keys.schedules, {field: value})
