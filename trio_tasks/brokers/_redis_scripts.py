"""Typed Python entry points to the Lua functions of ``_redis.lua``, and the job hash codec.

Each method is one ``FCALL`` (one round trip, one atomic step in Redis). Arguments are turned
into strings here, floats with ``repr`` so no digit is lost, and replies are parsed into Python
values; retrying on connection errors is the caller's business (:mod:`._redis_link`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any, NamedTuple

import coredis
import coredis.exceptions

from .._job import Job, JobStatus, job_from_record, job_to_record
from ._redis_keys import FUNCTION_PREFIX, RECORD_FIELDS, RedisKeys

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads


def library_code() -> str:
    """The source of ``_redis.lua``."""
    return resources.files(__package__).joinpath("_redis.lua").read_text(encoding="utf-8")


def encode_job(job: Job) -> list[str]:
    """The job's hash as a flat ``[field, value, ...]`` list, each value JSON-encoded."""
    flat: list[str] = []
    for name, value in job_to_record(job).items():
        flat.append(name)
        flat.append(_dumps(value))
    return flat


def decode_job(values: Sequence[str | None]) -> Job | None:
    """Rebuild a job from the values of :data:`RECORD_FIELDS`; ``None`` if the hash is gone."""
    if not values or values[0] is None:
        return None
    return job_from_record(
        {
            name: None if raw is None else _loads(raw)
            for name, raw in zip(RECORD_FIELDS, values, strict=True)
        }
    )


def decode_job_array(text: str) -> Job:
    """Rebuild a job from its record as one JSON array of the values of :data:`RECORD_FIELDS`
    (``record_json`` in ``_redis.lua``): one parse instead of one per field."""
    return job_from_record(dict(zip(RECORD_FIELDS, _loads(text), strict=True)))


def encode_json(value: Any) -> str:
    """The compact JSON text of ``value`` (as stored in a job's hash)."""
    return _dumps(value)


def num(value: float) -> str:
    """A float as a string that loses no digit (Lua and Redis parse it as a number)."""
    return repr(float(value))


class Leased(NamedTuple):
    """One job handed out by :meth:`RedisScripts.fetch`, with its lease token."""

    token: str
    job: Job


class Outcome(NamedTuple):
    """One entry of :meth:`RedisScripts.finish`: see ``finish`` in ``_redis.lua``.

    ``worker``: the worker that has just become free by it, to lease its next job in the same
    call (``""``: none).
    """

    job_id: str
    token: str
    kind: str
    value: str = ""
    at: str = ""
    worker: str = ""


class EnqueueResult(NamedTuple):
    """``full`` (with the unfinished count seen) or one entry per job: ``1`` created, ``2`` a
    repeat of an earlier id of the batch, or the existing job; ``leased``: the jobs leased for
    the idle workers given, one per worker in order."""

    full: bool
    unfinished: int
    entries: list[int | Job]
    leased: list[Leased]


class CancelResult(NamedTuple):
    """``code``: ``missing``, ``final``, ``running`` or ``cancelled``; the job when known."""

    code: str
    status: JobStatus | None
    job: Job | None


def _leased(reply: Sequence[Any]) -> list[Leased]:
    return [Leased(str(reply[i]), decode_job_array(reply[i + 1])) for i in range(0, len(reply), 2)]


class RedisScripts:
    """The Lua library bound to one client and namespace."""

    def __init__(self, client: coredis.Redis[str], keys: RedisKeys) -> None:
        self.client = client
        self.keys = keys
        self._code = library_code()
        self._script_keys = list(keys.script_keys)
        self._prefix = keys.prefix

    async def load(self) -> None:
        """Load (or replace) the library in Redis; done once per connection to a server."""
        await self.client.function_load(self._code, replace=True)

    async def _call(self, name: str, args: Iterable[str]) -> Any:
        arguments = [self._prefix, *args]
        try:
            return await self.client.fcall(FUNCTION_PREFIX + name, self._script_keys, arguments)
        except coredis.exceptions.ResponseError as exc:
            # A server restarted without persistence has forgotten the library.
            if "function not found" not in str(exc).lower():
                raise
            await self.load()
            return await self.client.fcall(FUNCTION_PREFIX + name, self._script_keys, arguments)

    async def enqueue(
        self,
        limit: int,
        jobs: Sequence[tuple[Job, float | None]],
        *,
        now: float = 0.0,
        lease_ms: int = 0,
        node: str = "",
        workers: Sequence[str] = (),
    ) -> EnqueueResult:
        """Admit ``jobs`` (each with its ``run_at`` score, ``None`` to queue it now); then, if
        any was queued, lease up to ``len(workers)`` jobs as :meth:`fetch` does, one per worker
        in order."""
        args = [str(limit), num(now), str(lease_ms), node, str(len(workers))]
        args += [_dumps(worker) for worker in workers]
        for job, score in jobs:
            fields = encode_job(job)
            args += [job.id, str(int(job.priority)), "" if score is None else num(score)]
            args.append(str(len(fields) // 2))
            args += fields
        reply = await self._call("enqueue", args)
        if reply[0] == "full":
            return EnqueueResult(True, int(reply[1]), [], [])
        entries: list[int | Job] = []
        for entry in reply[2:]:
            if isinstance(entry, int):
                entries.append(entry)
            else:
                existing = decode_job(entry)
                assert existing is not None
                entries.append(existing)
        return EnqueueResult(False, 0, entries, _leased(reply[1]))

    async def fetch(self, now: float, lease_ms: int, node: str, workers: list[str]) -> list[Leased]:
        """Lease up to ``len(workers)`` jobs, highest priority first, one per worker in order."""
        args = [num(now), str(lease_ms), node, str(len(workers))]
        args += [_dumps(worker) for worker in workers]
        return _leased(await self._call("fetch", args))

    async def renew(self, lease_ms: int, leases: Sequence[tuple[str, str]]) -> list[int]:
        """Extend ``(job_id, token)`` leases: 0 lost, 1 renewed, 2 renewed + cancel requested."""
        args = [str(lease_ms)]
        for job_id, token in leases:
            args += [job_id, token]
        return [int(code) for code in await self._call("renew", args)]

    async def finish(
        self,
        now: float,
        ttl: float,
        max_jobs: int,
        outcomes: Sequence[Outcome],
        *,
        lease_ms: int = 0,
        node: str = "",
        workers: Sequence[str] = (),
    ) -> tuple[list[JobStatus | Job | None], list[Leased]]:
        """Record ``outcomes``: for each, the job's status after it, else (the lease was lost:
        nothing changed) the job as it is now, ``None`` if it is gone. Then lease up to
        ``len(workers)`` jobs as :meth:`fetch` does, one per worker in order."""
        args = [num(now), str(max(1, round(ttl * 1000))), num(ttl), str(max_jobs)]
        args += [node, str(lease_ms), str(len(workers))]
        args += [_dumps(worker) for worker in workers]
        for outcome in outcomes:
            args += outcome[:5]
        statuses, leased = await self._call("finish", args)
        results: list[JobStatus | Job | None] = []
        for entry in statuses:
            results.append(
                JobStatus(_loads(entry)) if isinstance(entry, str) else decode_job(entry)
            )
        return results, _leased(leased)

    async def cancel(self, job_id: str, now: float, ttl: float, max_jobs: int) -> CancelResult:
        """Cancel a job; see ``cancel`` in ``_redis.lua``."""
        args = [job_id, num(now), str(max(1, round(ttl * 1000))), num(ttl), str(max_jobs)]
        reply = await self._call("cancel", args)
        code = reply[0]
        if code == "missing":
            return CancelResult(code, None, None)
        if code == "final":
            return CancelResult(code, JobStatus(_loads(reply[1])), None)
        job = decode_job(reply[1])
        return CancelResult(code, None if job is None else job.status, job)

    async def promote(self, now: float) -> tuple[int, float | None]:
        """Queue due scheduled jobs; return how many moved and when the next one is due."""
        moved, nxt = await self._call("promote", [num(now)])
        return int(moved), None if nxt is None else float(nxt)

    async def reap(self, now: float, ttl: float, max_jobs: int, error: str) -> list[str]:
        """Take back expired leases; return the ids."""
        args = [num(now), str(max(1, round(ttl * 1000))), num(ttl), str(max_jobs), error]
        return [str(job_id) for job_id in await self._call("reap", args)]

    async def progress(self, job_id: str, token: str, value: Any) -> bool:
        """Record progress if the lease is still held."""
        return bool(await self._call("progress", [job_id, token, _dumps(value)]))

    async def watch(self, job_id: str) -> Job | None:
        """The job, asking for its end to be announced on the done channel."""
        reply = await self._call("watch", [job_id])
        return None if reply is None else decode_job(reply)

    async def counts(self) -> list[int]:
        """Pending per priority (low..urgent), scheduled, running."""
        return [int(n) for n in await self._call("counts", [])]

    async def list_jobs(
        self, status: JobStatus | None, job_type: str | None, limit: int, scan_max: int
    ) -> list[Job]:
        """Matching jobs, newest first."""
        args = [
            "" if status is None else _dumps(status.value),
            "" if job_type is None else _dumps(job_type),
            str(limit),
            str(scan_max),
        ]
        jobs = [decode_job(entry) for entry in await self._call("list", args)]
        return [job for job in jobs if job is not None]

    async def get(self, job_id: str) -> Job | None:
        """The job, or ``None`` (a plain HMGET)."""
        values = await self.client.hmget(self.keys.job(job_id), RECORD_FIELDS)
        return decode_job(values)

    async def totals(self) -> dict[str, int]:
        """Cluster-wide counters (``submitted``, ``completed``, ``failed``…)."""
        raw = await self.client.hgetall(self.keys.stats)
        return {str(name): int(value) for name, value in raw.items()}
