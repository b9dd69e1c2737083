"""The Redis broker: many nodes share one Redis, the single source of truth (SPEC §10).

Every multi-key change is one Lua function (``_redis.lua``, called through
:mod:`._redis_scripts`). Around them each node runs:

- :mod:`._redis_delivery`: how leased jobs reach the node's workers (the feeder, leasing on
  submit and on finish, the stash, hand-back) and the batched outcome writer;
- :mod:`._redis_background`: the heartbeat (leases and the node registry), maintenance
  (promotion, reaping) and the pub/sub listener;
- :mod:`._redis_node`: the state those share, and the quarantine of corrupt records.

This module is the facade: :class:`RedisBroker`, the :class:`~._base.Broker` interface over
them. Delivery is at-least-once: see ``docs/redis.md``.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from functools import partial
from typing import Any

import trio

from .._errors import (
    BrokerUnavailable,
    InvalidValue,
    JobAlreadyFinished,
    JobNotFound,
    JobNotRetryable,
    QueueFull,
)
from .._job import RETRYABLE, Job, JobError, JobStatus, Priority
from .._limits import DispatchRules, LimitFigures
from .._log import library_logger
from .._schedules import ScheduleState
from .._stats import ClusterView
from . import _redis_schedules as schedules
from ._base import (
    Admission,
    Broker,
    BrokerHost,
    CancelOutcome,
    Delivery,
    QueueCounts,
    Recording,
    RecordStatus,
)
from ._redis_background import Background
from ._redis_client import make_client
from ._redis_codec import Corrupt, encode_json, node_view, num
from ._redis_delivery import Deliveries
from ._redis_events import relay_events
from ._redis_keys import LIBRARY_VERSION, RedisKeys
from ._redis_link import RedisLink, parse_redis_url
from ._redis_node import RedisNode
from ._redis_scripts import OutcomeKind

_PENDING = JobStatus.PENDING
_SCHEDULED = JobStatus.SCHEDULED
#: Seconds of silence after which a connection is taken for dead.
_MAX_IDLE = 30
#: The cluster-wide counters of :meth:`RedisBroker.cluster` (the ``stats`` hash).
TOTALS = ("submitted", "completed", "failed", "retried", "cancelled", "leases_expired")


class RedisBroker(Broker):
    """Queues and records in Redis, shared by every node pointing at it.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://…`` (TLS),
            ``unix:///path.sock?db=0``, ``redis+sentinel://host:port[,…]/<master>[/<db>]`` or
            ``redis+cluster://host:port[,…]``; the query may add ``namespace=`` (default
            ``default``: nodes share work only within one namespace) and ``lease=`` (a
            duration, default 15s).
        max_concurrency: the admission bound, counted cluster-wide (pending, scheduled and
            running jobs of the namespace).
        result_ttl, result_max_jobs, result_max_bytes: retention of finished jobs
            (cluster-wide): by age, count and bytes (payload, result and error as stored
            JSON, plus 512 bytes a job; the oldest go first).
        failed_ttl: how long failed jobs are kept (if longer than ``result_ttl``); they are
            also the last evicted by ``result_max_jobs`` and ``result_max_bytes``.
        lease: how long a running job stays leased without a heartbeat (overrides the URL).
        poll_interval: the longest an idle node waits before looking again without a wake-up,
            and the period of promotion and reaping.
        outcome_timeout: how long recording an outcome keeps trying while Redis is
            unreachable (default twice the lease); after that the outcome is dropped and
            the job runs again once its lease expires.
        node_id: names this node in job records, the node registry and ``CLIENT LIST``.
        min_replicas: replicas that must confirm (``WAIT``) each write that accepts jobs or
            records outcomes; one they do not confirm within ``replica_timeout`` seconds is
            refused (:class:`BrokerUnavailable` for a submission, ``NOT_RECORDED`` for an
            outcome). See ``docs/redis.md``, *BROKER_MIN_REPLICAS*.

    Resource handling: the connection pool lives inside :meth:`run`; other methods may only be
    called while it runs (they raise :class:`BrokerUnavailable` after it returned).

    Error handling: losing Redis never crashes the node. Background tasks retry with backoff
    (capped at ``retry_cap``) and :meth:`health` reports the reason meanwhile; submissions and
    lookups raise :class:`BrokerUnavailable`; outcomes are retried for ``outcome_timeout``.
    A record that does not decode is quarantined: the job ends ``failed`` (see
    :meth:`RedisNode.quarantine <._redis_node.RedisNode.quarantine>`).
    """

    #: Every submission is a round trip to Redis (see :attr:`Broker.enqueue_waits`).
    enqueue_waits = True

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        max_concurrency: int = 100,
        result_ttl: float = 3600.0,
        result_max_jobs: int = 10_000,
        result_max_bytes: int = 256 * 1_048_576,
        failed_ttl: float = 0.0,
        namespace: str | None = None,
        lease: float | None = None,
        poll_interval: float = 1.0,
        retry_cap: float = 2.0,
        outcome_timeout: float | None = None,
        node_id: str | None = None,
        logger: Any = None,
        min_replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        options = parse_redis_url(url)
        self.url = url
        self.max_concurrency = max_concurrency
        self.namespace = namespace or options.namespace or "default"
        self.lease = lease or options.lease or 15.0
        self.poll_interval = poll_interval
        self.outcome_timeout = outcome_timeout if outcome_timeout is not None else 2 * self.lease
        self.node_id = node_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
        self.keys = RedisKeys.for_namespace(self.namespace)
        self._redis = make_client(
            options.client_url,
            client_name=f"trio-tasks:{self.node_id}",
            connect_timeout=min(2.0, self.lease),
            stream_timeout=max(10.0, 3 * poll_interval),
            max_idle=max(_MAX_IDLE, round(3 * poll_interval)),
        )
        log: Any = logger if logger is not None else library_logger()
        self._link = RedisLink(log, retry_cap=retry_cap)
        self._link.closed = True
        node = self._node = RedisNode(
            redis=self._redis,
            keys=self.keys,
            link=self._link,
            node_id=self.node_id,
            lease=self.lease,
            poll_interval=poll_interval,
            result_ttl=result_ttl,
            result_max_jobs=result_max_jobs,
            outcome_timeout=self.outcome_timeout,
            logger=log,
            failed_ttl=failed_ttl,
            result_max_bytes=result_max_bytes,
        )
        self._scripts = node.scripts
        self.min_replicas = min_replicas
        self._scripts.confirm_writes(
            min_replicas, replica_timeout, cluster=self._redis.kind == "cluster"
        )
        self._delivery = Deliveries(node, max_concurrency)
        self._background = Background(node, retry_cap=retry_cap)
        self._counts = QueueCounts(dict.fromkeys(Priority, 0), 0, 0)

    @property
    def result_ttl(self) -> float:
        """Seconds a finished job is kept."""
        return self._node.result_ttl

    @property
    def result_max_jobs(self) -> int:
        """Finished jobs kept at most (cluster-wide)."""
        return self._node.result_max_jobs

    # -- lifecycle -------------------------------------------------------------------------

    async def run(
        self,
        host: BrokerHost,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Connect and run the feeder, heartbeat, maintenance and listener until cancelled.

        Starts even when Redis is unreachable (the node then reports unhealthy and keeps
        trying); the Lua library is loaded on the first answer. At a clean stop the node hands
        back the jobs leased for no worker and leaves the node registry.
        """
        node = self._node
        node.host = host
        release = trio.Event()
        async with trio.open_nursery() as holder:
            await holder.start(self._hold_client, release)
            try:
                await self._run_tasks(task_status)
            finally:
                await self._delivery.close()
                await self._background.leave()
                self._link.closed = True
                node.nursery = None
                release.set()
                for waiting in node.done.values():
                    waiting[0].set()  # wake every wait(): it ends with ShuttingDown

    async def _hold_client(
        self, release: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # The connection pool must outlive the tasks using it, so that a call in flight when
        # run() is cancelled (a lease, a cleanup) still gets its answer: shielded, it closes
        # only once run() has wound its tasks down.
        with trio.CancelScope(shield=True):
            async with self._redis.open():
                task_status.started()
                await release.wait()

    async def _run_tasks(self, task_status: trio.TaskStatus[None]) -> None:
        background = self._background
        async with trio.open_nursery() as nursery:
            self._node.nursery = nursery
            self._link.closed = False
            older: list[str] = []
            with trio.move_on_after(self._redis.connect_timeout):
                try:
                    await self._link.once(self._scripts.load)
                    older = await self._older_nodes()
                    if not older:
                        await background.beat()  # in the node registry at once
                except BrokerUnavailable as exc:
                    if self._link.refused:
                        # A wrong password does not fix itself: stop with one clear line.
                        raise InvalidValue(
                            f"Redis refused the credentials of the broker URL: {exc.reason}"
                        ) from None
                    self._node.log.warning("redis unreachable at start-up", error=exc.reason)
                except Exception as exc:
                    self._link.task_failed("start-up", exc)
            if older:
                # An older node takes this version's records for corrupt and fails their jobs.
                raise InvalidValue(
                    f"nodes of an older trio-tasks are running in namespace "
                    f"{self.namespace!r} ({', '.join(older[:5])}): stop them before starting "
                    f"this version (docs/redis.md, The Lua library)"
                )
            await nursery.start(background.listen)
            hub = getattr(self._node.host, "events", None)  # the processor's live job events
            if hub is not None:
                await nursery.start(relay_events, self._node, hub)
            nursery.start_soon(self._delivery.feed)
            nursery.start_soon(background.heartbeat)
            nursery.start_soon(background.maintain)
            nursery.start_soon(self._delivery.sweep_stash)
            self._node.log.info(
                "redis broker started",
                node=self.node_id,
                namespace=self.namespace,
                lease=self.lease,
            )
            task_status.started()

    async def _older_nodes(self) -> list[str]:
        """The ids of the live nodes of an older library version in this namespace."""
        _, infos = await self._link.once(self._scripts.cluster)
        return [
            str(info.get("id"))
            for info in infos
            if not isinstance(info.get("library"), int) or info["library"] < LIBRARY_VERSION
        ]

    def health(self) -> str | None:
        """Why Redis cannot be used right now, or ``None``."""
        if self._link.closed and self._node.host is not None:
            return "the Redis broker is stopped"
        return self._link.reason

    # -- submission ------------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[Admission]:
        """Admit all of ``jobs`` or none; see :meth:`Broker.enqueue`.

        Raises:
            QueueFull: the namespace holds ``max_concurrency`` unfinished jobs.
            BrokerUnavailable: Redis did not answer (submit again with the same ids).
        """
        now = self._node.now()
        entries: list[tuple[Job, float | None]] = []
        soonest: float | None = None
        for job in jobs:
            if job.run_at is not None and job.run_at > now:
                job.status = _SCHEDULED
                entries.append((job, job.run_at))
                soonest = job.run_at if soonest is None else min(soonest, job.run_at)
            else:
                job.status = _PENDING
                entries.append((job, None))
        queued = len(entries) if soonest is None else sum(s is None for _, s in entries)
        result = await self._delivery.enqueue(entries, queued)
        if result.full:
            raise QueueFull(self.max_concurrency)
        admissions = await self._node.admissions(jobs, result.entries)
        self._background.touch()
        if soonest is not None:
            self._background.promote_by(soonest)
        return admissions

    # -- workers ---------------------------------------------------------------------------

    async def fetch(self, worker_id: str) -> Delivery:
        """The next job leased for this worker; see :class:`~._redis_delivery.Deliveries`."""
        return await self._delivery.fetch(worker_id)

    async def complete(self, delivery: Delivery, result: Any) -> Recording:
        """Record success (fenced by the lease token)."""
        recording = await self._record(delivery, OutcomeKind.COMPLETED, encode_json(result))
        if recording.status is RecordStatus.RECORDED:
            recording.job.result = result
        return recording

    async def fail(self, delivery: Delivery, error: JobError, retry_at: float | None) -> Recording:
        """Record a failed attempt: scheduled for ``retry_at`` (queued now if due), or failed."""
        value = encode_json({"message": error.message, "type": error.type})
        if retry_at is None:
            recording = await self._record(delivery, OutcomeKind.FAILED, value)
        else:
            recording = await self._record(delivery, OutcomeKind.RETRY, value, num(retry_at))
        job = recording.job
        if recording.status is RecordStatus.RECORDED:
            job.error = error
            if retry_at is not None and not job.status.is_final:
                job.run_at = retry_at
                if job.status is _SCHEDULED:
                    self._background.promote_by(retry_at)
        return recording

    async def finish_cancelled(self, delivery: Delivery) -> Recording:
        """Record that a running job was cancelled on request."""
        return await self._record(delivery, OutcomeKind.CANCELLED)

    async def release(self, delivery: Delivery) -> None:
        """Put an interrupted job back at the front of its queue, for any node to run."""
        await self._record(delivery, OutcomeKind.RELEASED)

    async def _record(
        self, delivery: Delivery, kind: OutcomeKind, value: str = "", at: str = ""
    ) -> Recording:
        recording = await self._delivery.record(delivery, kind, value, at)
        self._background.touch()
        return recording

    async def set_progress(self, delivery_job: Job, value: Any) -> None:
        """Record progress; best effort (a lost write is not worth failing the job for)."""
        delivery_job.progress = value
        token = self._node.active.get(delivery_job.id)
        if token is None:
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._link.once(partial(self._scripts.progress, delivery_job.id, token, value))
        except BrokerUnavailable as exc:
            self._node.log.debug("progress not recorded", job_id=delivery_job.id, error=exc.reason)
        except Exception as exc:
            self._link.task_failed("progress", exc)

    # -- lookups and cancellation ----------------------------------------------------------

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Cancel a job on any node; see :meth:`Broker.cancel`.

        A running job is flagged and announced on the cancel channel: the node running it
        cancels its scope within moments (its heartbeat re-checks the flag in case the message
        is lost), and its worker records ``cancelled``.
        """
        node = self._node
        result = await self._link.once(
            partial(
                self._scripts.cancel,
                job_id,
                node.now(),
                node.result_ttl,
                node.result_max_jobs,
                node.failed_ttl,
            )
        )
        if result.code == "missing":
            raise JobNotFound(job_id)
        if result.code == "final":
            assert result.status is not None
            raise JobAlreadyFinished(job_id, result.status.value)
        was_corrupt = result.code == "corrupt" or isinstance(result.job, Corrupt)
        job = await node.resolve(result.job)
        if job is None:
            raise JobNotFound(job_id)
        if was_corrupt and job.status.is_final:
            raise JobAlreadyFinished(job_id, job.status.value)  # quarantined: failed
        running = result.code == "running"
        if running and job_id in node.active:
            node.on_cancel(job_id)
        return CancelOutcome(job, running=running)

    async def retry(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again, for any node to run; see :meth:`Broker.retry`.

        Raises:
            BrokerUnavailable: Redis did not answer.
        """
        job = await self.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job.status not in RETRYABLE:
            raise JobNotRetryable(job_id, job.status.value)
        code, value = await self._link.once(partial(self._scripts.retry, job, self.max_concurrency))
        if code == "missing":
            raise JobNotFound(job_id)
        if code == "full":
            raise QueueFull(self.max_concurrency)
        if code == "state":
            raise JobNotRetryable(job_id, value.value)
        fresh = await self._node.resolve(value)
        if code == "corrupt" or fresh is None:
            # Quarantined (a failed job again) or gone meanwhile: not queued.
            raise JobNotRetryable(job_id, "failed" if fresh is not None else "gone")
        return fresh

    async def get(self, job_id: str) -> Job | None:
        """The job as Redis has it, or ``None``."""
        return await self._node.resolve(await self._link.once(partial(self._scripts.get, job_id)))

    async def list_jobs(
        self, *, status: JobStatus | None, job_type: str | None, limit: int
    ) -> list[Job]:
        """Newest first, filtered, across the cluster."""
        if limit <= 0:
            await trio.lowlevel.checkpoint()
            return []
        scan_max = max(10_000, 2 * (self.max_concurrency + self.result_max_jobs))
        found = await self._link.once(
            partial(self._scripts.list_jobs, status, job_type, limit, scan_max)
        )
        jobs: list[Job] = []
        for entry in found:
            job = await self._node.resolve(entry)
            if job is None:
                continue
            if (status is None or job.status is status) and (job_type in (None, job.type)):
                jobs.append(job)
        return jobs

    async def wait(self, job_id: str) -> Job:
        """Wait for the job's end; see :meth:`~._redis_background.Background.wait`.

        Raises:
            JobNotFound: no such job.
            ShuttingDown: this node's broker stopped before the job ended.
        """
        return await self._background.wait(job_id)

    def set_dispatch(self, rules: DispatchRules) -> None:
        """Apply priority aging to every lease, and write the per-type limits to Redis (at
        start-up and after a server restart), where they hold for every node."""
        self.dispatch = rules
        self._scripts.set_dispatch(rules, self._node.now)

    async def limit_figures(self) -> dict[str, LimitFigures]:
        """Each limited type's limits, running and held jobs, cluster-wide.

        Raises:
            BrokerUnavailable: Redis cannot be reached.
        """
        return await self._link.once(self._scripts.limit_figures)

    async def counts(self) -> QueueCounts:
        """Cluster-wide queue figures (the last known ones while Redis is unreachable)."""
        try:
            raw = await self._link.once(self._scripts.counts)
        except BrokerUnavailable:
            return self._counts
        self._counts = QueueCounts(
            {Priority(i + 1): raw[i] for i in range(4)}, scheduled=raw[4], running=raw[5]
        )
        return self._counts

    async def totals(self) -> dict[str, int]:
        """Cluster-wide counters since the namespace was created: ``submitted``,
        ``completed``, ``failed``, ``cancelled``, ``retried``, ``leases_expired``.

        Raises:
            BrokerUnavailable: Redis did not answer.
        """
        return await self._link.once(self._scripts.totals)

    async def cluster(self) -> ClusterView:
        """The cluster-wide counters (:data:`TOTALS`, 0 when never counted) and the live
        nodes, as of their last heartbeat (registry entries that do not decode are skipped).

        Raises:
            BrokerUnavailable: Redis did not answer.
        """
        stats, infos = await self._link.once(self._scripts.cluster)
        nodes = sorted(filter(None, map(node_view, infos)), key=lambda n: n.id)
        return ClusterView({name: stats.get(name, 0) for name in TOTALS}, tuple(nodes))

    def unfinished_ids(self) -> list[str]:
        """Nothing is abandoned: unfinished jobs stay in Redis for the other nodes."""
        return []

    # -- periodic jobs (see _redis_schedules) -----------------------------------------------

    async def schedule_state(self, name: str) -> ScheduleState:
        """The state of schedule ``name`` shared by every node.

        Raises:
            BrokerUnavailable: Redis did not answer.
        """
        commands = self._redis.commands
        return await self._link.once(partial(schedules.schedule_state, commands, self.keys, name))

    async def set_schedule_paused(self, name: str, paused: bool) -> None:
        """Pause or resume schedule ``name`` for every node.

        Raises:
            BrokerUnavailable: Redis did not answer.
        """
        commands = self._redis.commands
        await self._link.once(partial(schedules.set_paused, commands, self.keys, name, paused))

    async def record_tick(self, name: str, tick: float, job_id: str | None) -> None:
        """Keep ``tick`` as the latest of schedule ``name``.

        Raises:
            BrokerUnavailable: Redis did not answer.
        """
        commands, keys = self._redis.commands, self.keys
        await self._link.once(partial(schedules.record_tick, commands, keys, name, tick, job_id))
