"""The Redis broker: many nodes share one Redis, the single source of truth (SPEC §10).

Every multi-key change is one Lua function (``_redis.lua``, called through
:mod:`._redis_scripts`); this module adds what each node does around them:

- a *feeder* task leases jobs for all idle workers of the node in one call, then blocks on the
  wake-up list (BLPOP) when nothing is pending, so fetching never busy-polls;
- a *heartbeat* renews all of the node's leases in one call every ``lease / 3``;
- a *maintenance* task promotes due scheduled jobs and reaps expired leases (any node may;
  the Lua functions make each move happen once);
- a *listener* receives cancellations (and ends of awaited jobs) over pub/sub;
- outcomes recorded at the same moment by several workers go to Redis in one call, which also
  leases the next job of each of those workers (a worker that finishes a job and fetches the
  next costs one round trip, shared with the others finishing at that moment).

Delivery is at-least-once: see ``docs/redis.md``.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import coredis
import coredis.exceptions
import structlog
import trio
from coredis.retry import NoRetryPolicy

from .._clock import WallClock
from .._errors import (
    BrokerUnavailable,
    JobAlreadyFinished,
    JobNotFound,
    QueueFull,
    ShuttingDown,
)
from .._job import Job, JobError, JobStatus, Priority
from ._base import Admission, Broker, CancelOutcome, Delivery, QueueCounts
from ._memory import snapshot
from ._redis_batch import Batcher, Pending
from ._redis_keys import RedisKeys
from ._redis_link import RedisLink, cancelled_part, is_transient, parse_redis_url
from ._redis_scripts import Leased, Outcome, RedisScripts, encode_json, num

_PENDING = JobStatus.PENDING
_SCHEDULED = JobStatus.SCHEDULED
_LEASE_EXPIRED = encode_json(
    {"message": "lease expired: its node stopped renewing it", "type": "LeaseExpired"}
)
_NOT_RECORDED = "outcome not recorded: the job will run again when its lease expires"
#: Most outcomes written in one call.
_BATCH_MAX = 256
#: Recent cancellations remembered, for jobs on their way to a worker when it arrived.
_CANCELS_KEPT = 4096
#: Seconds of silence after which a connection is taken for dead.
_MAX_IDLE = 30
#: A job leased for a worker along with its previous outcome is handed back if the worker
#: has not come for it within this many seconds (it stopped instead of fetching).
_STASH_MAX_AGE = 0.1
#: Kinds of outcome after which the worker fetches its next job.
_FREES_WORKER = frozenset("cfrx")

_Settled = Pending[Outcome, JobStatus | Job | None]


class _Waiter:
    """A worker waiting in :meth:`RedisBroker.fetch`."""

    __slots__ = ("delivery", "event", "gone", "worker_id")

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.event = trio.Event()
        self.delivery: Delivery | None = None
        self.gone = False


class RedisBroker(Broker):
    """Queues and records in Redis, shared by every node pointing at it.

    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://…`` (TLS) or
            ``unix:///path.sock?db=0``; the query may add ``namespace=`` (default
            ``default``: nodes share work only within one namespace) and ``lease=`` (a
            duration, default 15s).
        max_concurrency: the admission bound, counted cluster-wide (pending, scheduled and
            running jobs of the namespace).
        result_ttl, result_max_jobs: retention of finished jobs (cluster-wide).
        lease: how long a running job stays leased without a heartbeat (overrides the URL).
        poll_interval: the longest an idle node waits before looking again without a wake-up,
            and the period of promotion and reaping.
        outcome_timeout: how long recording an outcome keeps trying while Redis is
            unreachable (default twice the lease); after that the outcome is dropped and
            the job runs again once its lease expires.
        node_id: names this node in job records and in ``CLIENT LIST``.

    Resource handling: the connection pool lives inside :meth:`run`; other methods may only be
    called while it runs (they raise :class:`BrokerUnavailable` after it returned).

    Error handling: losing Redis never crashes the node. Background tasks retry with backoff
    (capped at ``retry_cap``) and :meth:`health` reports the reason meanwhile; submissions and
    lookups raise :class:`BrokerUnavailable`; outcomes are retried for ``outcome_timeout``.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        max_concurrency: int = 100,
        result_ttl: float = 3600.0,
        result_max_jobs: int = 10_000,
        namespace: str | None = None,
        lease: float | None = None,
        poll_interval: float = 1.0,
        retry_cap: float = 2.0,
        outcome_timeout: float | None = None,
        node_id: str | None = None,
        logger: Any = None,
    ) -> None:
        options = parse_redis_url(url)
        self.url = url
        self.max_concurrency = max_concurrency
        self.result_ttl = result_ttl
        self.result_max_jobs = result_max_jobs
        self.namespace = namespace or options.namespace or "default"
        self.lease = lease or options.lease or 15.0
        self.poll_interval = poll_interval
        self.outcome_timeout = outcome_timeout if outcome_timeout is not None else 2 * self.lease
        self.node_id = node_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
        self.keys = RedisKeys.for_namespace(self.namespace)
        self._log: Any = logger if logger is not None else structlog.get_logger("trio_tasks")
        self._client: coredis.Redis[str] = coredis.Redis.from_url(
            options.client_url,
            decode_responses=True,
            retry_policy=NoRetryPolicy(),
            connect_timeout=min(2.0, self.lease),
            stream_timeout=max(10.0, 3 * poll_interval),
            client_name=f"trio-tasks:{self.node_id}",
            # A connection silent this long is dead (a partition without a reset): close it
            # so calls fail over to a new one. It must outlast a BLPOP and the pub/sub
            # keep-alive (a PING after 15s of silence); idle ones are cheaply reopened.
            max_idle_time=max(_MAX_IDLE, round(3 * poll_interval)),
        )
        self._scripts = RedisScripts(self._client, self.keys)
        self._link = RedisLink(self._log, retry_cap=retry_cap)
        self._link.closed = True
        self._lease_ms = max(1, round(self.lease * 1000))
        #: Leases may be reaped only after this node has reached Redis for this long without a
        #: break: long enough for every live node to renew its leases after an outage.
        self.reap_grace = self.lease + retry_cap
        self._clock: WallClock | None = None
        self._on_cancel: Callable[[str], None] = lambda job_id: None
        self._nursery: trio.Nursery | None = None
        self._waiters: deque[_Waiter] = deque()
        self._want = trio.Event()
        #: Jobs this node holds a lease on (handed to a worker, not yet recorded): id -> token.
        self._active: dict[str, str] = {}
        self._lost: set[str] = set()
        self._cancels: OrderedDict[str, None] = OrderedDict()
        self._outcomes: Batcher[Outcome, JobStatus | Job | None] = Batcher(
            self._write_outcomes, max_batch=_BATCH_MAX
        )
        self._done: dict[str, list[Any]] = {}
        #: Jobs leased for a worker with its previous outcome, until it fetches: worker id ->
        #: (delivery, trio time leased).
        self._stash: dict[str, tuple[Delivery, float]] = {}
        self._stash_added = trio.Event()
        #: Off once the node stops fetching (a worker's fetch was cancelled: shutting down).
        self._lease_on_finish = True
        self._maintenance_wake: trio.CancelScope | None = None
        self._counts = QueueCounts(dict.fromkeys(Priority, 0), 0, 0)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(
        self,
        *,
        clock: WallClock,
        on_cancel: Callable[[str], None],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Connect and run the feeder, heartbeat, maintenance and listener until cancelled.

        Starts even when Redis is unreachable (the node then reports unhealthy and keeps
        trying); the Lua library is loaded on the first answer.
        """
        self._clock = clock
        self._on_cancel = on_cancel
        release = trio.Event()
        async with trio.open_nursery() as holder:
            await holder.start(self._hold_client, release)
            try:
                await self._run_tasks(task_status)
            finally:
                self._lease_on_finish = False
                if self._stash:
                    with trio.CancelScope(shield=True):
                        await self._unfetch(self._take_stash())
                self._link.closed = True
                self._nursery = None
                release.set()
                for waiting in self._done.values():
                    waiting[0].set()  # wake every wait(): it ends with ShuttingDown

    async def _hold_client(
        self, release: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # The connection pool must outlive the tasks using it, so that a call in flight when
        # run() is cancelled (a lease, a cleanup) still gets its answer: shielded, it closes
        # only once run() has wound its tasks down.
        with trio.CancelScope(shield=True):
            async with self._client:
                task_status.started()
                await release.wait()

    async def _run_tasks(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._link.closed = False
            with trio.move_on_after(self._client.connection_pool.connect_timeout or 2.0):
                try:
                    await self._link.once(self._scripts.load)
                except BrokerUnavailable as exc:
                    self._log.warning("redis unreachable at start-up", error=exc.reason)
            await nursery.start(self._listen)
            nursery.start_soon(self._feed)
            nursery.start_soon(self._heartbeat)
            nursery.start_soon(self._maintain)
            nursery.start_soon(self._sweep_stash)
            self._log.info(
                "redis broker started",
                node=self.node_id,
                namespace=self.namespace,
                lease=self.lease,
            )
            task_status.started()

    def health(self) -> str | None:
        """Why Redis cannot be used right now, or ``None``."""
        if self._link.closed and self._clock is not None:
            return "the Redis broker is stopped"
        return self._link.reason

    def _now(self) -> float:
        assert self._clock is not None, "RedisBroker.run() has not started"
        return self._clock.now()

    # -- submission ------------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[Admission]:
        """Admit all of ``jobs`` or none; see :meth:`Broker.enqueue`.

        Raises:
            QueueFull: the namespace holds ``max_concurrency`` unfinished jobs.
            BrokerUnavailable: Redis did not answer (submit again with the same ids).
        """
        now = self._now()
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
        batch = self._take_idle(queued)
        try:
            result = await self._link.once(partial(self._shielded_enqueue, entries, batch))
        except BaseException:
            self._give_back(batch)
            raise
        orphans = self._hand_over(batch, result.leased)
        if orphans:
            self._spawn_unfetch(orphans)
        if result.full:
            raise QueueFull(self.max_concurrency)
        admissions: list[Admission] = []
        first: dict[str, Job] = {}
        for job, entry in zip(jobs, result.entries, strict=True):
            if entry == 1:
                first[job.id] = job
                admissions.append(Admission(snapshot(job), True))
            elif isinstance(entry, Job):
                first[job.id] = entry
                admissions.append(Admission(entry, False))
            else:
                admissions.append(Admission(snapshot(first[job.id]), False))
        if soonest is not None:
            self._promote_by(soonest)
        return admissions

    def _take_idle(self, n: int) -> list[_Waiter]:
        """Up to ``n`` idle workers of this node, taken from the feeder, for ``enqueue`` to
        lease jobs for them in the same call (none once the node stops fetching)."""
        batch: list[_Waiter] = []
        if not self._lease_on_finish:
            return batch
        waiters = self._waiters
        while waiters and len(batch) < n:
            waiter = waiters.popleft()
            if not waiter.gone:
                batch.append(waiter)
        return batch

    def _give_back(self, batch: list[_Waiter]) -> None:
        """Return idle workers not served to the front of the feeder's queue."""
        idle = [w for w in batch if not w.gone]
        if idle:
            self._waiters.extendleft(reversed(idle))
            self._want.set()

    async def _shielded_enqueue(
        self, entries: list[tuple[Job, float | None]], batch: list[_Waiter]
    ) -> Any:
        # Leasing for idle workers: once sent, the call must come back, as a fetch must.
        with trio.CancelScope(shield=bool(batch)):
            return await self._scripts.enqueue(
                self.max_concurrency,
                entries,
                now=self._now(),
                lease_ms=self._lease_ms,
                node=self.node_id,
                workers=[w.worker_id for w in batch],
            )

    def _hand_over(self, batch: list[_Waiter], leased: Sequence[Leased]) -> list[Delivery]:
        """Give each waiter its leased job, in order; the waiters left over go back to the
        feeder. Returns the deliveries whose worker has gone meanwhile (to hand back)."""
        orphans: list[Delivery] = []
        for waiter, (token, job) in zip(batch, leased, strict=False):
            delivery = Delivery(job, token)
            self._active[job.id] = token
            if waiter.gone:
                orphans.append(delivery)
            else:
                waiter.delivery = delivery
                waiter.event.set()
        if len(leased) < len(batch):
            self._give_back(batch[len(leased) :])
        return orphans

    def _promote_by(self, run_at: float) -> None:
        scope = self._maintenance_wake
        if scope is not None and self._clock is not None:
            scope.deadline = min(scope.deadline, self._clock.to_trio(run_at))

    # -- workers ---------------------------------------------------------------------------

    async def fetch(self, worker_id: str) -> Delivery:
        """The job leased for this worker with its previous outcome, if any; else wait for the
        feeder to lease one."""
        if self._stash:
            stashed = self._stash.pop(worker_id, None)
            if stashed is not None:
                try:
                    await trio.lowlevel.checkpoint()
                except BaseException:
                    self._stop_leasing_on_finish()
                    self._spawn_unfetch([stashed[0]])
                    raise
                return self._delivered(stashed[0])
        waiter = _Waiter(worker_id)
        self._waiters.append(waiter)
        self._want.set()
        try:
            await waiter.event.wait()
        except BaseException:
            waiter.gone = True
            self._stop_leasing_on_finish()
            if waiter.delivery is not None:
                # Leased for us after we were cancelled: give it back.
                self._spawn_unfetch([waiter.delivery])
            raise
        delivery = waiter.delivery
        assert delivery is not None
        return self._delivered(delivery)

    def _delivered(self, delivery: Delivery) -> Delivery:
        job_id = delivery.job.id
        if job_id in self._cancels and self._nursery is not None:
            # Cancelled while the lease was on its way here: stop it once the worker holds it.
            self._nursery.start_soon(self._cancel_soon, job_id)
        return delivery

    def _stop_leasing_on_finish(self) -> None:
        """A worker stopped fetching (the node is shutting down): lease nothing more along with
        outcomes, and hand back what was leased so for workers that will not come for it."""
        self._lease_on_finish = False
        if self._stash:
            self._spawn_unfetch(self._take_stash())

    def _take_stash(self) -> list[Delivery]:
        deliveries = [delivery for delivery, _ in self._stash.values()]
        self._stash.clear()
        return deliveries

    async def _sweep_stash(self) -> None:
        """Hand back jobs leased for workers that did not come for them (they stopped)."""
        while True:
            if not self._stash:
                self._stash_added = trio.Event()
                await self._stash_added.wait()
            await trio.sleep(_STASH_MAX_AGE)
            horizon = trio.current_time() - _STASH_MAX_AGE
            stale = [worker for worker, (_, at) in self._stash.items() if at <= horizon]
            if stale:
                await self._unfetch_shielded([self._stash.pop(worker)[0] for worker in stale])

    async def _cancel_soon(self, job_id: str) -> None:
        await trio.lowlevel.checkpoint()
        if job_id in self._active:
            self._on_cancel(job_id)

    async def _feed(self) -> None:
        """Lease jobs for every waiting worker in one call; sleep on the wake-up list if none."""
        while True:
            if not self._waiters:
                self._want = trio.Event()
                await self._want.wait()
                continue
            batch = [w for w in self._waiters if not w.gone]
            self._waiters.clear()
            if not batch:
                continue
            workers = [w.worker_id for w in batch]
            leased = await self._link.retry(partial(self._shielded_fetch, workers))
            orphans = self._hand_over(batch, leased)
            if orphans:
                with trio.CancelScope(shield=True):
                    await self._unfetch(orphans)
            if len(leased) < len(batch):
                await self._sleep_until_woken()

    async def _shielded_fetch(self, workers: list[str]) -> Any:
        # Once sent, the call must come back: its leases would otherwise wait for expiry.
        with trio.CancelScope(shield=True):
            return await self._scripts.fetch(self._now(), self._lease_ms, self.node_id, workers)

    async def _sleep_until_woken(self) -> None:
        try:
            await self._client.blpop([self.keys.wake], timeout=self.poll_interval)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._link.failed(exc)
            await trio.sleep(self._link.backoff())
        else:
            self._link.succeeded()

    def _spawn_unfetch(self, deliveries: list[Delivery]) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._unfetch_shielded, deliveries)

    async def _unfetch_shielded(self, deliveries: list[Delivery]) -> None:
        with trio.CancelScope(shield=True):
            await self._unfetch(deliveries)

    async def _unfetch(self, deliveries: list[Delivery]) -> None:
        async with trio.open_nursery() as nursery:
            for delivery in deliveries:
                nursery.start_soon(self._settle_delivery, delivery, "u", "", "")

    async def complete(self, delivery: Delivery, result: Any) -> Job:
        """Record success (fenced by the lease token)."""
        job = delivery.job
        item = await self._settle_delivery(delivery, "c", encode_json(result), "")
        if item.result is JobStatus.COMPLETED:
            job.result = result
        return self._apply(job, item)

    async def fail(self, delivery: Delivery, error: JobError, retry_at: float | None) -> Job:
        """Record a failed attempt: scheduled for ``retry_at`` (queued now if due), or failed."""
        job = delivery.job
        value = encode_json({"message": error.message, "type": error.type})
        if retry_at is None:
            item = await self._settle_delivery(delivery, "f", value, "")
        else:
            item = await self._settle_delivery(delivery, "r", value, num(retry_at))
        if isinstance(item.result, JobStatus):
            job.error = error
            if retry_at is not None and not item.result.is_final:
                job.run_at = retry_at
                if item.result is _SCHEDULED:
                    self._promote_by(retry_at)
        return self._apply(job, item)

    async def finish_cancelled(self, delivery: Delivery) -> Job:
        """Record that a running job was cancelled on request."""
        return self._apply(delivery.job, await self._settle_delivery(delivery, "x", "", ""))

    async def release(self, delivery: Delivery) -> None:
        """Put an interrupted job back at the front of its queue, for any node to run."""
        self._apply(delivery.job, await self._settle_delivery(delivery, "l", "", ""))

    def _apply(self, job: Job, item: _Settled) -> Job:
        """Bring the worker's copy of ``job`` in line with what was recorded."""
        result = item.result
        if isinstance(result, JobStatus):
            job.status = result
            if result.is_final:
                job.completed_at = item.time
            return job
        if isinstance(result, Job):
            self._log.warning(
                "lease lost: outcome not recorded",
                job_id=job.id,
                job_type=job.type,
                kind=item.item.kind,
                status=result.status.value,
            )
            return result
        return job

    async def _settle_delivery(
        self, delivery: Delivery, kind: str, value: str, at: str
    ) -> _Settled:
        job = delivery.job
        job_id = job.id
        token = delivery.token or ""
        worker = (job.worker_id or "") if kind in _FREES_WORKER else ""
        item = await self._outcomes.submit(Outcome(job_id, token, kind, value, at, worker))
        if self._active.get(job_id) == token:
            del self._active[job_id]
        self._lost.discard(job_id)
        return item

    async def _write_outcomes(
        self, outcomes: Sequence[Outcome]
    ) -> tuple[float, list[JobStatus | Job | None]] | None:
        """One ``finish`` call for a batch, retried for ``outcome_timeout``; ``None`` if it
        could not be written (the jobs will run again when their leases expire)."""
        now = 0.0
        # Lease the next job of each worker freed by these outcomes in the same call.
        workers = [o.worker for o in outcomes if o.worker] if self._lease_on_finish else []

        async def call() -> tuple[list[JobStatus | Job | None], list[Leased]]:
            nonlocal now
            now = self._now()
            return await self._scripts.finish(
                now,
                self.result_ttl,
                self.result_max_jobs,
                outcomes,
                lease_ms=self._lease_ms,
                node=self.node_id,
                workers=workers,
            )

        try:
            with trio.CancelScope(shield=True):
                results, leased = await self._link.retry(call, budget=self.outcome_timeout)
        except BrokerUnavailable as exc:
            self._log.error(_NOT_RECORDED, job_ids=[o.job_id for o in outcomes], error=exc.reason)
            return None
        except coredis.exceptions.RedisError:
            self._log.exception(_NOT_RECORDED, job_ids=[o.job_id for o in outcomes])
            return None
        if leased:
            self._stash_leased(workers, leased)
        return now, results

    def _stash_leased(self, workers: list[str], leased: list[Leased]) -> None:
        at = trio.current_time()
        orphans: list[Delivery] = []
        for worker, (token, job) in zip(workers, leased, strict=False):
            delivery = Delivery(job, token)
            self._active[job.id] = token
            if not self._lease_on_finish:
                orphans.append(delivery)  # stopped meanwhile
                continue
            previous = self._stash.get(worker)
            if previous is not None:
                orphans.append(previous[0])
            self._stash[worker] = (delivery, at)
        if self._stash and not self._stash_added.is_set():
            self._stash_added.set()
        if orphans:
            self._spawn_unfetch(orphans)

    async def set_progress(self, delivery_job: Job, value: Any) -> None:
        """Record progress; best effort (a lost write is not worth failing the job for)."""
        delivery_job.progress = value
        token = self._active.get(delivery_job.id)
        if token is None:
            return
        try:
            await self._link.once(partial(self._scripts.progress, delivery_job.id, token, value))
        except BrokerUnavailable as exc:
            self._log.debug("progress not recorded", job_id=delivery_job.id, error=exc.reason)

    # -- background tasks ------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Renew all of this node's leases in one call every ``lease / 3``."""
        pause = self.lease / 3
        while True:
            await trio.sleep(pause)
            pause = self.lease / 3
            leases = list(self._active.items())
            if not leases:
                continue
            try:
                codes = await self._scripts.renew(self._lease_ms, leases)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._link.failed(exc)
                pause = self._link.backoff()
                continue
            self._link.succeeded()
            for (job_id, token), code in zip(leases, codes, strict=True):
                if self._active.get(job_id) != token:
                    continue
                if code == 2:
                    self._on_cancel(job_id)
                elif code == 0 and job_id not in self._lost:
                    self._lost.add(job_id)
                    self._log.warning("lease lost: the job may run again elsewhere", job_id=job_id)

    async def _maintain(self) -> None:
        """Promote due scheduled jobs and reap expired leases, every ``poll_interval`` at most."""
        period = min(self.poll_interval, self.lease / 2)
        clock = self._clock
        assert clock is not None
        while True:
            deadline = trio.current_time() + period
            try:
                _, due = await self._scripts.promote(self._now())
                if due is not None:
                    deadline = min(deadline, clock.to_trio(due))
                if self._link.stable_for >= self.reap_grace:
                    reaped = await self._scripts.reap(
                        self._now(), self.result_ttl, self.result_max_jobs, _LEASE_EXPIRED
                    )
                    if reaped:
                        self._log.warning("leases expired: jobs taken back", job_ids=reaped)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._link.failed(exc)
                deadline = trio.current_time() + self._link.backoff()
            else:
                self._link.succeeded()
            with trio.CancelScope(deadline=deadline) as self._maintenance_wake:
                await trio.sleep_forever()
            self._maintenance_wake = None

    async def _listen(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Receive cancellations and ends of awaited jobs; resubscribe after a lost connection."""
        started = False
        channels = [self.keys.cancel_channel, self.keys.done_channel]
        while True:
            try:
                async with self._client.pubsub(
                    channels=channels, ignore_subscribe_messages=True, retry_policy=NoRetryPolicy()
                ) as pubsub:
                    if not started:
                        started = True
                        task_status.started()
                    async for message in pubsub:
                        if message["type"] == "message":
                            self._dispatch(str(message["channel"]), str(message["data"]))
            except BaseException as exc:
                if not is_transient(exc):
                    cancelled = cancelled_part(exc)
                    if cancelled is not None:
                        raise cancelled from None  # stopping: the connection's end is noise
                    raise
                self._link.failed(exc)
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep(self._link.backoff())

    def _dispatch(self, channel: str, job_id: str) -> None:
        if channel == self.keys.cancel_channel:
            self._cancels[job_id] = None
            if len(self._cancels) > _CANCELS_KEPT:
                self._cancels.popitem(last=False)
            if job_id in self._active:
                self._on_cancel(job_id)
        else:
            waiting = self._done.get(job_id)
            if waiting is not None:
                waiting[0].set()

    # -- lookups and cancellation ----------------------------------------------------------

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Cancel a job on any node; see :meth:`Broker.cancel`.

        A running job is flagged and announced on the cancel channel: the node running it
        cancels its scope within moments (its heartbeat re-checks the flag in case the message
        is lost), and its worker records ``cancelled``.
        """
        result = await self._link.once(
            partial(
                self._scripts.cancel,
                job_id,
                self._now(),
                self.result_ttl,
                self.result_max_jobs,
            )
        )
        if result.code == "missing":
            raise JobNotFound(job_id)
        if result.code == "final":
            assert result.status is not None
            raise JobAlreadyFinished(job_id, result.status.value)
        assert result.job is not None
        if result.code == "running":
            if job_id in self._active:
                self._on_cancel(job_id)
            return CancelOutcome(result.job, running=True)
        return CancelOutcome(result.job, running=False)

    async def get(self, job_id: str) -> Job | None:
        """The job as Redis has it, or ``None``."""
        return await self._link.once(partial(self._scripts.get, job_id))

    async def list_jobs(
        self, *, status: JobStatus | None, job_type: str | None, limit: int
    ) -> list[Job]:
        """Newest first, filtered, across the cluster."""
        if limit <= 0:
            return []
        scan_max = max(10_000, 2 * (self.max_concurrency + self.result_max_jobs))
        return await self._link.once(
            partial(self._scripts.list_jobs, status, job_type, limit, scan_max)
        )

    async def wait(self, job_id: str) -> Job:
        """Wait for the job's end, announced on the done channel (re-read every
        ``poll_interval`` in case an announcement is lost). Waits through Redis outages.

        Raises:
            JobNotFound: no such job.
            ShuttingDown: this node's broker stopped before the job ended (the job itself
                stays in Redis for the other nodes).
        """
        waiting = self._done.get(job_id)
        if waiting is None:
            waiting = self._done[job_id] = [trio.Event(), 0]
        waiting[1] += 1
        job: Job | None = None
        try:
            while True:
                event: trio.Event = waiting[0]
                if self._link.closed:
                    status = "unfinished" if job is None else job.status.value
                    raise ShuttingDown(
                        f"job {job_id!r} is still {status}: this node stopped (the job stays "
                        "in Redis for the other nodes)"
                    )
                try:
                    job = await self._link.retry(partial(self._scripts.watch, job_id))
                except BrokerUnavailable:
                    continue  # stopped while Redis was unreachable: ShuttingDown above
                if job is None:
                    raise JobNotFound(job_id)
                if job.status.is_final:
                    return job
                with trio.move_on_after(self.poll_interval):
                    await event.wait()
                if event.is_set():
                    waiting[0] = trio.Event()
        finally:
            waiting[1] -= 1
            if waiting[1] == 0 and self._done.get(job_id) is waiting:
                del self._done[job_id]

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

    def unfinished_ids(self) -> list[str]:
        """Nothing is abandoned: unfinished jobs stay in Redis for the other nodes."""
        return []
