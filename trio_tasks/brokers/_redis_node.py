"""What the parts of one node's Redis broker share, and the quarantine of corrupt records.

:class:`RedisNode` holds the connection, the Lua library, the link's health, the node's leases
and the host (the processor); the delivery (:mod:`._redis_delivery`), the background tasks
(:mod:`._redis_background`) and the facade (:mod:`._redis`) all work on one instance.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import trio

from .._errors import BrokerUnavailable
from .._job import Job, job_from_record, salvage_record, snapshot
from .._log import library_logger
from ._base import Admission, BrokerHost
from ._redis_client import RedisClient
from ._redis_codec import Corrupt, read_record
from ._redis_keys import RedisKeys
from ._redis_link import RedisLink
from ._redis_scripts import RedisScripts

#: Recent cancellations remembered, for jobs on their way to a worker when it arrived.
CANCELS_KEPT = 4096
#: The raw record of a quarantined job is kept at least this long (seconds).
QUARANTINE_MIN_KEEP = 7 * 24 * 3600.0


class RedisNode:
    """The state one node's broker parts share (see the module docstring)."""

    def __init__(
        self,
        *,
        redis: RedisClient,
        keys: RedisKeys,
        link: RedisLink,
        node_id: str,
        lease: float,
        poll_interval: float,
        result_ttl: float,
        result_max_jobs: int,
        outcome_timeout: float,
        logger: Any = None,
        failed_ttl: float = 0.0,
        result_max_bytes: int = 256 * 1_048_576,
    ) -> None:
        #: The plain commands (``_redis_commands.py``); the ``FCALL``s go through :attr:`scripts`.
        self.commands = redis.commands
        self.keys = keys
        #: Retention's byte bound is applied by the scripts (``RedisScripts.max_bytes``).
        self.scripts = RedisScripts(redis, keys, max_bytes=result_max_bytes)
        self.link = link
        self.node_id = node_id
        self.lease = lease
        self.lease_ms = max(1, round(lease * 1000))
        self.poll_interval = poll_interval
        self.result_ttl = result_ttl
        self.result_max_jobs = result_max_jobs
        #: Seconds a failed job is kept (never less than ``result_ttl``).
        self.failed_ttl = max(result_ttl, failed_ttl)
        self.outcome_timeout = outcome_timeout
        self.log: Any = logger if logger is not None else library_logger()
        self.host: BrokerHost | None = None
        self.nursery: trio.Nursery | None = None
        #: Jobs this node holds a lease on (handed to a worker, not yet recorded): id -> token.
        self.active: dict[str, str] = {}
        #: Leases the heartbeat found lost (warned about once).
        self.lost: set[str] = set()
        #: Jobs whose outcome is being written: a heartbeat that finds their lease ended may
        #: have met the outcome itself (it ends the lease; a real loss is reported by the write).
        self.settling: set[str] = set()
        self.cancels: OrderedDict[str, None] = OrderedDict()
        #: Jobs someone on this node waits for: id -> [event set at its end, waiters].
        self.done: dict[str, list[Any]] = {}

    def now(self) -> float:
        """The host's wall-clock time."""
        assert self.host is not None, "RedisBroker.run() has not started"
        return self.host.clock.now()

    def on_cancel(self, job_id: str) -> None:
        """Stop a job running here (cancelled from any node)."""
        if self.host is not None:
            self.host.on_cancel(job_id)

    def remember_cancel(self, job_id: str) -> None:
        """A cancellation was announced: remember it for a job on its way to a worker."""
        self.cancels[job_id] = None
        if len(self.cancels) > CANCELS_KEPT:
            self.cancels.popitem(last=False)
        if job_id in self.active:
            self.on_cancel(job_id)

    def spawn(self, task: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``task(*args)`` in the broker's nursery (dropped once the broker stopped)."""
        if self.nursery is not None:
            self.nursery.start_soon(task, *args)

    # -- corrupt records ----------------------------------------------------------------------

    async def quarantine(self, corrupt: Corrupt) -> Job | None:
        """Quarantine the record of ``corrupt.job_id`` (see ``quarantine`` in ``_redis.lua``):
        return the job as it now stands (the salvaged, ``failed`` one), or ``None`` if the job
        is gone. A record that decodes by now (another node quarantined it) is returned as is.

        Never raises for the record or the script; only :class:`BrokerUnavailable` (Redis did
        not answer).
        """
        job_id = corrupt.job_id
        raw = await self.link.once(partial(self.scripts.raw_record, job_id))
        if isinstance(raw, str):
            if raw == "none":
                return None
            record: dict[str, Any] = {}
            problem: str | None = f"the job's key holds a {raw}, not a hash"
        else:
            if all(value is None for value in raw):
                return None
            record, problem = read_record(raw)
            if problem is None:
                try:
                    return job_from_record(record)
                except Exception as exc:
                    problem = str(exc) or corrupt.problem
        salvaged = salvage_record(record, job_id, problem or corrupt.problem)
        keep = max(QUARANTINE_MIN_KEEP, self.result_ttl)
        call = partial(self.scripts.quarantine, salvaged, self.now(), self.result_ttl, keep)
        try:
            done = await self.link.once(call)
        except BrokerUnavailable:
            raise
        except Exception as exc:
            self.link.task_failed("quarantine", exc)
            return salvaged  # answered, though not stored: tried again on the next read
        if done:
            self.active.pop(job_id, None)
            self.log.warning(
                "corrupt job record quarantined: the job ends failed",
                job_id=job_id,
                problem=problem or corrupt.problem,
                raw_key=self.keys.quarantine(job_id),
            )
        return salvaged

    async def quarantine_all(self, corrupt: Sequence[Corrupt]) -> None:
        """Quarantine each of ``corrupt`` (a background task: retries while Redis is away for
        up to ``outcome_timeout``, logs and gives up on anything else; a record left behind is
        found again by the reaper or the next read)."""
        deadline = trio.current_time() + self.outcome_timeout
        for item in corrupt:
            while True:
                try:
                    await self.quarantine(item)
                except BrokerUnavailable:
                    if self.link.closed or trio.current_time() > deadline:
                        return
                    await trio.sleep(self.link.backoff())
                    continue
                except Exception as exc:
                    self.link.task_failed("quarantine", exc)
                break

    def quarantine_soon(self, corrupt: Sequence[Corrupt]) -> None:
        """:meth:`quarantine_all` in the background (nothing to do: nothing spawned)."""
        if corrupt:
            self.spawn(self.quarantine_all, list(corrupt))

    async def resolve(self, found: Job | Corrupt | None) -> Job | None:
        """A job read from Redis, with a corrupt record quarantined first."""
        if isinstance(found, Corrupt):
            return await self.quarantine(found)
        return found

    async def admissions(
        self, jobs: Sequence[Job], entries: Sequence[int | Job | Corrupt]
    ) -> list[Admission]:
        """The admissions of a batch from what ``enqueue`` answered per job (``1`` created,
        ``2`` a repeat within the batch, the existing job, or a corrupt one to quarantine)."""
        admissions: list[Admission] = []
        first: dict[str, Job] = {}
        for job, entry in zip(jobs, entries, strict=True):
            if entry == 1:
                # The job itself: this broker keeps no reference to it (Redis has the record).
                first[job.id] = job
                admissions.append(Admission(job, True))
            elif isinstance(entry, int):
                admissions.append(Admission(snapshot(first[job.id]), False))
            else:
                found = await self.resolve(entry)
                if found is None:  # a corrupt record that vanished meanwhile
                    assert isinstance(entry, Corrupt)
                    found = salvage_record({}, job.id, entry.problem)
                first[job.id] = found
                admissions.append(Admission(found, False))
        return admissions
