"""Typed Python entry points to the Lua functions of ``_redis.lua``.

Each method is one ``FCALL`` (one round trip, one atomic step in Redis). Arguments are turned
into strings here, floats with ``repr`` so no digit is lost, and replies are parsed into Python
values; retrying on connection errors is the caller's business (:mod:`._redis_link`).

Replies are decoded by :mod:`._redis_codec`, which never raises: a record that does not decode
comes back as :class:`Corrupt`, for the broker to quarantine (:meth:`RedisScripts.quarantine`).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any, NamedTuple

from .._errors import BrokerUnavailable
from .._job import RECORD_FIELDS, Job, JobStatus, requeued
from .._limits import DispatchRules, LimitFigures, TypeLimit
from ._redis_client import Client, RedisClient
from ._redis_codec import (
    NEW_JOB_FIELDS,
    NO_LEASES,
    Corrupt,
    Leases,
    decode_job,
    encode_job,
    encode_new_job,
    ms,
    num,
    parse_leases,
    parse_status,
    wrong_type,
)
from ._redis_errors import is_error
from ._redis_keys import FUNCTION_PREFIX, RedisKeys

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads

#: Where ``_redis.lua`` has the record's fields put in (``local FIELDS = {...}``).
FIELDS_PLACEHOLDER = "--[[RECORD_FIELDS]]"
#: Where ``_redis.lua`` has the names of its keys put in (``local KEY_NAMES = {...}``).
KEYS_PLACEHOLDER = "--[[KEY_NAMES]]"
#: Where ``_redis.lua`` has the fields of every new record put in (``local NEW_FIELDS``).
NEW_FIELDS_PLACEHOLDER = "--[[NEW_JOB_FIELDS]]"
_NEW = len(NEW_JOB_FIELDS)


def library_code() -> str:
    """The source of ``_redis.lua``, with its ``FIELDS`` list made from :data:`RECORD_FIELDS`,
    its ``NEW_FIELDS`` from :data:`NEW_JOB_FIELDS` and its ``KEY_NAMES`` from
    :attr:`RedisKeys.script_keys` (after the prefix)."""
    code = resources.files(__package__).joinpath("_redis.lua").read_text(encoding="utf-8")
    keys = RedisKeys.for_namespace("x")
    names = [key.removeprefix(keys.prefix) for key in keys.script_keys]
    code = code.replace(KEYS_PLACEHOLDER, ", ".join(f"'{name}'" for name in names))
    code = code.replace(NEW_FIELDS_PLACEHOLDER, ", ".join(f"'{name}'" for name in NEW_JOB_FIELDS))
    return code.replace(FIELDS_PLACEHOLDER, ", ".join(f"'{name}'" for name in RECORD_FIELDS))


def encode_limit(limit: TypeLimit) -> str:
    """A type's limits as ``_redis.lua`` stores them: ``"concurrency,count,period"``, each
    empty when not limited; the rate's text after a ``,`` so figures can show it as written."""
    rate = limit.rate
    concurrency = "" if limit.concurrency is None else str(limit.concurrency)
    if rate is None:
        return f"{concurrency},,"
    return f"{concurrency},{rate.count},{num(rate.period)}|{rate.text}"


def decode_limit(spec: str) -> tuple[int | None, str | None]:
    """The concurrency and the rate's text of a stored limit (see :func:`encode_limit`)."""
    head, _, text = spec.partition("|")
    concurrency = head.split(",", 1)[0]
    return (int(concurrency) if concurrency.isdecimal() else None), (text or None)


class OutcomeKind(enum.StrEnum):
    """What :meth:`RedisScripts.finish` records for a leased job (the letter is the wire form
    that ``finish`` in ``_redis.lua`` reads)."""

    COMPLETED = "c"
    FAILED = "f"
    RETRY = "r"
    CANCELLED = "x"
    #: Handed back at shutdown: to the front of its queue.
    RELEASED = "l"
    #: Leased for a worker that never took it: as RELEASED, and the attempt is not counted.
    UNFETCHED = "u"

    @property
    def frees_worker(self) -> bool:
        """Whether the worker fetches its next job after this outcome."""
        return self not in (OutcomeKind.RELEASED, OutcomeKind.UNFETCHED)


class Outcome(NamedTuple):
    """One entry of :meth:`RedisScripts.finish`: see ``finish`` in ``_redis.lua``.

    ``worker``: the worker that has just become free by it, to lease its next job in the same
    call (``""``: none).
    """

    job_id: str
    token: str
    kind: OutcomeKind
    value: str = ""
    at: str = ""
    worker: str = ""


#: What ``finish`` answers for one outcome: the status after it (recorded), the current job
#: (the lease was lost), ``None`` (the job is gone) or a corrupt record.
Finished = JobStatus | Job | Corrupt | None


class EnqueueResult(NamedTuple):
    """``full`` (with the unfinished count seen) or one entry per job: ``1`` created, ``2`` a
    repeat of an earlier id of the batch, or the existing job; ``leased``: the jobs leased for
    the idle workers given, one per worker in order."""

    full: bool
    unfinished: int
    entries: list[int | Job | Corrupt]
    leased: Leases


class CancelResult(NamedTuple):
    """``code``: ``missing``, ``final``, ``running``, ``cancelled`` or ``corrupt``; the job
    when known (:class:`Corrupt` if its record does not decode)."""

    code: str
    status: JobStatus | None
    job: Job | Corrupt | None


class NotReplicated(BrokerUnavailable):
    """A write that accepts jobs or records outcomes was applied by the master but not
    confirmed by enough replicas in time (``WAIT``), so it may be lost in a fail-over: it is
    refused. ``leases`` are the jobs the call leased meanwhile (to be delivered as usual)."""

    def __init__(self, reason: str, leases: Leases = NO_LEASES) -> None:
        super().__init__(reason)
        self.leases = leases


class RedisScripts:
    """The Lua library bound to one Redis and namespace.

    ``max_bytes``: the byte bound of retention (``RESULT_MAX_BYTES``) that :meth:`finish`,
    :meth:`cancel` and :meth:`reap` apply with their ``ttl`` and ``max_jobs``.
    """

    def __init__(
        self,
        redis: RedisClient,
        keys: RedisKeys,
        *,
        max_bytes: int = 256 * 1_048_576,
    ) -> None:
        self._redis = redis
        #: The plain commands (loading the library, reading records and counters).
        self.commands = redis.commands
        #: The lean path (``_redis_wire.py``) the ``FCALL``s take on a single server;
        #: ``None``: coredis (Sentinel, Cluster).
        self.wire = redis.wire
        self.keys = keys
        self.max_bytes = max_bytes
        self._code = library_code()
        # One key of the namespace: Redis Cluster routes by it; the functions build the
        # others from the prefix (``namespaced`` in ``_redis.lua``).
        self._script_keys = [keys.script_keys[0]]
        self._prefix = keys.prefix
        self._replicas = 0
        self._replica_timeout_ms = 1000
        self._cluster = False
        #: Priority aging (seconds, ``0``: off) as passed to the leasing functions.
        self._aging = "0"
        #: Per-type limits written at each :meth:`load`, and the clock they are written by.
        self._limits: list[str] = []
        self._now: Callable[[], float] | None = None

    def set_dispatch(self, rules: DispatchRules, now: Callable[[], float]) -> None:
        """Apply ``rules``: priority aging in every lease, and the per-type limits written to
        Redis at every :meth:`load` (at start-up and after a server restart); ``now`` is the
        node's clock. Only the types named change: another node's types keep their limits."""
        self._aging = num(rules.aging) if rules.aging > 0 else "0"
        self._limits = []
        for name, limit in rules.limits.items():
            self._limits += [_dumps(name), encode_limit(limit)]
        for name in sorted(rules.unlimited):
            self._limits += [_dumps(name), ""]
        self._now = now

    def confirm_writes(self, replicas: int, timeout: float, *, cluster: bool = False) -> None:
        """Make ``enqueue`` and ``finish`` wait until ``replicas`` replicas have their write
        (``WAIT replicas timeout`` on the same connection), else raise :class:`NotReplicated`.
        On one server (or a Sentinel's master) the write and the ``WAIT`` go in one pipeline,
        one round trip; on a cluster the ``WAIT`` follows the write on its node."""
        self._replicas = replicas
        self._replica_timeout_ms = max(1, round(timeout * 1000))
        self._cluster = cluster

    @property
    def client(self) -> Client:
        """The coredis client (Sentinel, Cluster: the ``FCALL``s without :attr:`wire`)."""
        return self._redis.client

    async def load(self) -> None:
        """Load (or replace) the library in Redis; done once per connection to a server. Then
        write this node's per-type limits (:meth:`set_dispatch`)."""
        await self.commands.function_load(self._code)
        if self._limits and self._now is not None:
            await self._fcall(
                FUNCTION_PREFIX + "set_limits", [self._prefix, num(self._now()), *self._limits]
            )

    async def set_limits(self, now: float, limits: dict[str, TypeLimit | None]) -> None:
        """Set (or, for ``None``, remove) the limits of job types; see ``set_limits`` in
        ``_redis.lua``."""
        args = [num(now)]
        for name, limit in limits.items():
            args += [_dumps(name), "" if limit is None else encode_limit(limit)]
        await self._call("set_limits", args)

    async def limit_figures(self) -> dict[str, LimitFigures]:
        """Each limited type's limits, running and held jobs, cluster-wide."""
        flat = await self._call("limit_figures", [])
        figures: dict[str, LimitFigures] = {}
        for i in range(0, len(flat), 4):
            try:
                name = _loads(flat[i])
            except ValueError:
                continue
            if not isinstance(name, str):
                continue
            concurrency, rate = decode_limit(str(flat[i + 1]))
            figures[name] = LimitFigures(concurrency, rate, int(flat[i + 2]), int(flat[i + 3]))
        return dict(sorted(figures.items()))

    async def _call(self, name: str, args: Iterable[str], *, confirm: bool = False) -> Any:
        """One ``FCALL``; with ``confirm`` (and replicas required), answers ``(reply, acked)``:
        how many replicas confirmed it (:meth:`confirm_writes`)."""
        arguments = [self._prefix, *args]
        confirm = confirm and self._replicas > 0
        try:
            if confirm:
                return await self._fcall_confirmed(name, arguments)
            return await self._fcall(FUNCTION_PREFIX + name, arguments)
        except Exception as exc:
            # A server restarted without persistence has forgotten the library.
            if not is_error(exc, "ResponseError") or "function not found" not in str(exc).lower():
                raise
            await self.load()
            if confirm:
                return await self._fcall_confirmed(name, arguments)
            return await self._fcall(FUNCTION_PREFIX + name, arguments)

    async def _confirmed(self, name: str, args: list[str]) -> tuple[Any, int]:
        """:meth:`_call` with confirmation: the reply (``None`` if lost) and the replicas that
        confirmed it (the number required when none is)."""
        if self._replicas <= 0:
            return await self._call(name, args), 0
        reply, acked = await self._call(name, args, confirm=True)
        return reply, int(acked)

    async def _fcall(self, function: str, arguments: list[str]) -> Any:
        if self.wire is not None:
            return await self.wire.fcall(function, self._script_keys, arguments)
        return await self.client.fcall(function, self._script_keys, arguments)

    async def _fcall_confirmed(self, name: str, arguments: list[str]) -> tuple[Any, int]:
        function = FUNCTION_PREFIX + name
        if self.wire is not None:
            # The write, then WAIT on the same connection, in one write and one round trip.
            return await self.wire.fcall_wait(
                function, self._script_keys, arguments, self._replicas, self._replica_timeout_ms
            )
        if self._cluster:
            # A cluster routes a pipeline by key, and WAIT has none: coredis sends it after
            # the write on the write's own connection (a second round trip). Its reply is
            # lost when the replicas do not confirm: the leases it made expire and run again.
            try:
                with self.client.ensure_replication(self._replicas, self._replica_timeout_ms):
                    reply = await self.client.fcall(function, self._script_keys, arguments)
            except Exception as exc:
                if not is_error(exc, "ReplicationError"):
                    raise
                return None, 0
            return reply, self._replicas
        import coredis

        client = self.client
        assert isinstance(client, coredis.Redis)
        # Non-transactional: the write, then WAIT on the same connection, in one round trip.
        async with client.pipeline(transaction=False, raise_on_error=False) as pipe:
            written = pipe.fcall(function, self._script_keys, arguments)
            acked = pipe.wait(self._replicas, self._replica_timeout_ms)
        return await written, int(await acked)

    def _unconfirmed(self, acked: int, leases: Leases = NO_LEASES) -> NotReplicated:
        return NotReplicated(
            f"the write was not confirmed by {self._replicas} replica(s) within "
            f"{self._replica_timeout_ms} ms (confirmed by {acked})",
            leases,
        )

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
        in order.

        Raises:
            NotReplicated: fewer replicas than required confirmed it (:meth:`confirm_writes`).
        """
        args = [str(limit), num(now), str(lease_ms), node, self._aging, str(len(workers))]
        args += [_dumps(worker) for worker in workers]
        for job, score in jobs:
            values = encode_new_job(job)  # written only where no key is
            args += (
                job.id,
                str(int(job.priority)),
                "" if score is None else num(score),
                str((len(values) - _NEW) // 2),
            )
            args += values
        reply, acked = await self._confirmed("enqueue", args)
        if reply == 1:  # one job, created, nothing leased (the short answer)
            reply = ["ok", [], 1]
        if acked < self._replicas:
            leased = NO_LEASES if reply is None or reply[0] == "full" else parse_leases(reply[1])
            raise self._unconfirmed(acked, leased)
        if reply[0] == "full":
            return EnqueueResult(True, int(reply[1]), [], NO_LEASES)
        entries: list[int | Job | Corrupt] = []
        for (job, _), entry in zip(jobs, reply[2:], strict=True):
            if isinstance(entry, int):
                entries.append(entry)
            elif isinstance(entry, str):
                entries.append(wrong_type(job.id, entry))
            else:
                existing = decode_job(entry, job.id)
                entries.append(
                    Corrupt(job.id, "the record vanished") if existing is None else existing
                )
        return EnqueueResult(False, 0, entries, parse_leases(reply[1]))

    async def fetch(self, now: float, lease_ms: int, node: str, workers: list[str]) -> Leases:
        """Lease up to ``len(workers)`` jobs, highest priority first, one per worker in order."""
        args = [num(now), str(lease_ms), node, self._aging, str(len(workers))]
        args += [_dumps(worker) for worker in workers]
        return parse_leases(await self._call("fetch", args))

    async def heartbeat(
        self,
        lease_ms: int,
        node: str,
        node_ttl: float,
        info: str,
        leases: Sequence[tuple[str, str]],
    ) -> list[int]:
        """Register this node (``info`` for ``node_ttl`` seconds) and extend its
        ``(job_id, token)`` leases: 0 lost, 1 renewed, 2 renewed + cancel requested."""
        args = [str(lease_ms), node, ms(node_ttl), info]
        for job_id, token in leases:
            args += [job_id, token]
        return [int(code) for code in await self._call("heartbeat", args)]

    async def leave(self, node: str) -> None:
        """Take ``node`` out of the registry."""
        await self._call("leave", [node])

    async def cluster(self) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """The cluster-wide counters and the registry entries of the live nodes."""
        stats, nodes = await self._call("cluster", [])
        if isinstance(stats, dict):
            pairs = list(stats.items())
        else:
            pairs = list(zip(stats[::2], stats[1::2], strict=True))
        totals: dict[str, int] = {}
        for name, value in pairs:
            try:
                totals[str(name)] = int(value)
            except ValueError:
                continue  # not a counter: not ours
        infos: list[dict[str, Any]] = []
        for text in nodes:
            try:
                info = _loads(text)
            except ValueError:
                continue
            if isinstance(info, dict):
                infos.append(info)
        return totals, infos

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
        failed_ttl: float | None = None,
    ) -> tuple[list[Finished], Leases]:
        """Record ``outcomes``: for each, the job's status after it, else (the lease was lost:
        nothing changed) the job as it is now, ``None`` if it is gone. Then lease up to
        ``len(workers)`` jobs as :meth:`fetch` does, one per worker in order. Final jobs are
        kept ``ttl`` seconds, failed ones ``failed_ttl`` (at least ``ttl``).

        Raises:
            NotReplicated: fewer replicas than required confirmed it (:meth:`confirm_writes`).
        """
        args = [num(now), num(max(ttl, failed_ttl or 0.0)), num(ttl), str(max_jobs)]
        args += [str(self.max_bytes), node, str(lease_ms), self._aging, str(len(workers))]
        args += [_dumps(worker) for worker in workers]
        for outcome in outcomes:
            args += outcome[:5]
        reply, acked = await self._confirmed("finish", args)
        if acked < self._replicas:
            raise self._unconfirmed(acked, NO_LEASES if reply is None else parse_leases(reply[1]))
        statuses, leased = reply
        results: list[Finished] = []
        for outcome, entry in zip(outcomes, statuses, strict=True):
            if isinstance(entry, str):
                results.append(parse_status(entry, outcome.job_id))
            else:
                results.append(None if entry is None else decode_job(entry, outcome.job_id))
        return results, parse_leases(leased)

    async def cancel(
        self, job_id: str, now: float, ttl: float, max_jobs: int, failed_ttl: float | None = None
    ) -> CancelResult:
        """Cancel a job; see ``cancel`` in ``_redis.lua``."""
        args = [job_id, num(now), num(max(ttl, failed_ttl or 0.0)), num(ttl), str(max_jobs)]
        args.append(str(self.max_bytes))
        reply = await self._call("cancel", args)
        code = reply[0]
        if code == "missing":
            return CancelResult(code, None, None)
        if code == "corrupt":
            return CancelResult(code, None, Corrupt(job_id, "unknown status or key type"))
        if code == "final":
            return CancelResult(code, JobStatus(_loads(reply[1])), None)
        job = decode_job(reply[1], job_id)
        return CancelResult(code, job.status if isinstance(job, Job) else None, job)

    async def promote(self, now: float) -> tuple[int, float | None]:
        """Queue due scheduled jobs; return how many moved and when the next one is due."""
        moved, nxt = await self._call("promote", [num(now)])
        return int(moved), None if nxt is None else float(nxt)

    async def reap(
        self, now: float, ttl: float, max_jobs: int, error: str, failed_ttl: float | None = None
    ) -> tuple[list[str], list[str]]:
        """Take back expired leases; return the ids, and those of corrupt records found."""
        args = [num(now), num(max(ttl, failed_ttl or 0.0)), num(ttl), str(max_jobs)]
        args += [str(self.max_bytes), error]
        reaped, corrupt = await self._call("reap", args)
        return [str(job_id) for job_id in reaped], [str(job_id) for job_id in corrupt]

    async def progress(self, job_id: str, token: str, value: Any) -> bool:
        """Record progress if the lease is still held."""
        return bool(await self._call("progress", [job_id, token, _dumps(value)]))

    async def watch(self, job_id: str) -> Job | Corrupt | None:
        """The job, asking for its end to be announced on the done channel."""
        reply = await self._call("watch", [job_id])
        if reply is None:
            return None
        if isinstance(reply, str):
            return wrong_type(job_id, reply)
        return decode_job(reply, job_id)

    async def counts(self) -> list[int]:
        """Pending per priority (low..urgent), scheduled, running."""
        return [int(n) for n in await self._call("counts", [])]

    async def list_jobs(
        self, status: JobStatus | None, job_type: str | None, limit: int, scan_max: int
    ) -> list[Job | Corrupt]:
        """Matching jobs, newest first (corrupt records whatever the filters)."""
        args = [
            "" if status is None else _dumps(status.value),
            "" if job_type is None else _dumps(job_type),
            str(limit),
            str(scan_max),
        ]
        jobs: list[Job | Corrupt] = []
        for entry in await self._call("list", args):
            if isinstance(entry, str):
                jobs.append(wrong_type(entry, "value of another type"))
                continue
            job = decode_job(entry[:-1], str(entry[-1]))
            if job is not None:
                jobs.append(job)
        return jobs

    async def get(self, job_id: str) -> Job | Corrupt | None:
        """The job, or ``None`` (a plain HMGET)."""
        raw = await self.raw_record(job_id)
        if isinstance(raw, str):
            return None if raw == "none" else wrong_type(job_id, raw)
        return decode_job(raw, job_id)

    async def raw_record(self, job_id: str) -> list[str | None] | str:
        """The stored values of :data:`RECORD_FIELDS`, or the key's type if not a hash."""
        key = self.keys.job(job_id)
        try:
            return await self.commands.hmget(key, RECORD_FIELDS)
        except Exception as exc:
            if not is_error(exc, "WrongTypeError"):
                raise
            return await self.commands.type(key)

    async def quarantine(self, salvaged: Job, now: float, ttl: float, keep: float) -> bool:
        """Replace the record of ``salvaged.id`` by ``salvaged`` (see ``quarantine`` in
        ``_redis.lua``), keeping the raw one ``keep`` seconds; whether it was done here."""
        args = [salvaged.id, num(now), ms(ttl), ms(keep), *encode_job(salvaged)]
        return bool(await self._call("quarantine", args))

    async def retry(self, job: Job, limit: int) -> tuple[str, Any]:
        """Queue ``job`` (failed or cancelled, as read) again as :func:`requeued` makes it, if
        it has not changed since; see ``retry`` in ``_redis.lua``. Returns ``("ok", record)``,
        ``("state", status)``, ``("full", unfinished)``, ``("missing", None)`` or
        ``("corrupt", None)``."""
        seen = "" if job.completed_at is None else num(job.completed_at)
        fresh = requeued(job)
        reply = await self._call("retry", [job.id, str(limit), seen, *encode_job(fresh)])
        code = str(reply[0])
        if code == "ok":
            return code, decode_job(reply[1], job.id)
        if code == "state":
            return code, JobStatus(_loads(reply[1]))
        if code == "full":
            return code, int(reply[1])
        return code, None

    async def totals(self) -> dict[str, int]:
        """Cluster-wide counters (``submitted``, ``completed``, ``failed``…)."""
        raw = await self.commands.hgetall(self.keys.stats)
        return {str(name): int(value) for name, value in raw.items()}
