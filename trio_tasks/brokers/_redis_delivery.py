"""How leased jobs reach the workers of one node, three ways, under one rule.

A job is leased in Redis for a named worker (``running``, a token, a deadline in ``running``)
in one of three calls:

- the *feeder* leases jobs for every waiting worker of the node in one ``fetch`` call, then
  blocks on the wake-up list (BLPOP) when nothing is pending, so fetching never busy-polls;
- a *submission* (``enqueue``) leases jobs for the node's idle workers in the same call;
- recording *outcomes* (``finish``) leases the next job of each worker those outcomes set
  free; the job waits in the *stash* until that worker fetches.

**The invariant: every lease reaches a worker or is handed back.** A lease whose worker has
gone (its fetch was cancelled: the node is stopping), whose worker did not come for it within
:data:`STASH_MAX_AGE`, or that arrives after the node stopped leasing is handed back at once
(``finish`` kind ``u``: to the front of its queue, the attempt not counted), shielded from
cancellation. A leased job whose record does not decode is not a lease to deliver: it is
quarantined (it ends ``failed``) and its worker is served again. Nothing else may drop a
lease; one that is dropped anyway waits in ``running`` until the reaper takes it back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from functools import partial

import trio

from .._errors import BrokerUnavailable
from .._job import Job, JobStatus
from ._base import Delivery, Recording, RecordStatus
from ._redis_batch import Batcher, Pending
from ._redis_codec import Corrupt, Leased, Leases
from ._redis_node import RedisNode
from ._redis_scripts import EnqueueResult, Finished, NotReplicated, Outcome, OutcomeKind

_NOT_RECORDED = "outcome not recorded: the job will run again when its lease expires"
#: Most outcomes written in one call.
_BATCH_MAX = 256
#: A job leased for a worker along with its previous outcome is handed back if the worker
#: has not come for it within this many seconds (it stopped instead of fetching).
STASH_MAX_AGE = 0.1

Settled = Pending[Outcome, Finished]


class _Waiter:
    """A worker waiting in :meth:`Deliveries.fetch`."""

    __slots__ = ("delivery", "event", "gone", "worker_id")

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.event = trio.Event()
        self.delivery: Delivery | None = None
        self.gone = False


class Deliveries:
    """The waiters, the feeder, the stash and the outcome writer of one node (see the module
    docstring for the rule they keep)."""

    def __init__(self, node: RedisNode, max_concurrency: int) -> None:
        self.node = node
        self.max_concurrency = max_concurrency
        self._waiters: deque[_Waiter] = deque()
        self._want = trio.Event()
        self.outcomes: Batcher[Outcome, Finished] = Batcher(
            self._write_outcomes, max_batch=_BATCH_MAX
        )
        #: Jobs leased for a worker with its previous outcome, until it fetches: worker id ->
        #: (delivery, trio time leased).
        self._stash: dict[str, tuple[Delivery, float]] = {}
        self._stash_added = trio.Event()
        #: Off once the node stops fetching (a worker's fetch was cancelled: shutting down).
        self.leasing = True

    @property
    def idle(self) -> int:
        """Workers waiting in :meth:`fetch` right now."""
        return sum(not w.gone for w in self._waiters)

    # -- leasing on submit ----------------------------------------------------------------

    async def enqueue(self, entries: list[tuple[Job, float | None]], queued: int) -> EnqueueResult:
        """Admit ``entries`` (``enqueue`` in ``_redis.lua``), leasing jobs for up to ``queued``
        idle workers of this node in the same call.

        Raises:
            BrokerUnavailable: Redis did not answer.
        """
        batch = self._take_idle(queued)
        try:
            result = await self.node.link.once(partial(self._shielded_enqueue, entries, batch))
        except NotReplicated as exc:
            # Refused, but what it leased is leased: deliver it as usual.
            self._hand_over(batch, exc.leases)
            raise
        except BaseException:
            self._give_back(batch)
            raise
        self._hand_over(batch, result.leased)
        return result

    def _take_idle(self, n: int) -> list[_Waiter]:
        batch: list[_Waiter] = []
        if not self.leasing:
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
    ) -> EnqueueResult:
        node = self.node
        call = node.scripts.enqueue(
            self.max_concurrency,
            entries,
            now=node.now(),
            lease_ms=node.lease_ms,
            node=node.node_id,
            workers=[w.worker_id for w in batch],
        )
        if not batch:
            return await call  # nothing leased: no scope (a producer's every submission)
        # Leasing for idle workers: once sent, the call must come back, as a fetch must.
        with trio.CancelScope(shield=True):
            result = await call
        return result

    def _hand_over(self, batch: list[_Waiter], leases: Leases) -> int:
        """Give each waiter its leased job, in order; waiters left over (nothing leased, or a
        corrupt record, quarantined meanwhile) go back to the feeder; leases whose worker has
        gone are handed back. Returns how many waiters got a job."""
        orphans: list[Delivery] = []
        served = 0
        for waiter, leased in zip(batch, leases.taken, strict=False):
            if isinstance(leased, Corrupt):
                continue
            served += 1
            delivery = self._hold(leased)
            if waiter.gone:
                orphans.append(delivery)
            else:
                waiter.delivery = delivery
                waiter.event.set()
        self._give_back([w for w in batch if w.delivery is None])
        self.node.quarantine_soon(leases.corrupt())
        self._spawn_unfetch(orphans)
        return served

    def _hold(self, leased: Leased) -> Delivery:
        self.node.active[leased.job.id] = leased.token
        return Delivery(leased.job, leased.token)

    # -- the workers' side ----------------------------------------------------------------

    async def fetch(self, worker_id: str) -> Delivery:
        """The job leased for this worker with its previous outcome, if any; else wait for the
        feeder (or a submission) to lease one."""
        if self._stash:
            stashed = self._stash.pop(worker_id, None)
            if stashed is not None:
                try:
                    await trio.lowlevel.checkpoint()
                except BaseException:
                    self.stop_leasing()
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
            self.stop_leasing()
            if waiter.delivery is not None:
                # Leased for us after we were cancelled: give it back.
                self._spawn_unfetch([waiter.delivery])
            raise
        delivery = waiter.delivery
        assert delivery is not None
        return self._delivered(delivery)

    def _delivered(self, delivery: Delivery) -> Delivery:
        job_id = delivery.job.id
        if job_id in self.node.cancels:
            # Cancelled while the lease was on its way here: stop it once the worker holds it.
            self.node.spawn(self._cancel_soon, job_id)
        return delivery

    async def _cancel_soon(self, job_id: str) -> None:
        await trio.lowlevel.checkpoint()
        if job_id in self.node.active:
            self.node.on_cancel(job_id)

    def stop_leasing(self) -> None:
        """A worker stopped fetching (the node is shutting down): lease nothing more along with
        outcomes, and hand back what was leased so far for workers that will not come for it."""
        self.leasing = False
        if self._stash:
            self._spawn_unfetch(self._take_stash())

    def _take_stash(self) -> list[Delivery]:
        deliveries = [delivery for delivery, _ in self._stash.values()]
        self._stash.clear()
        return deliveries

    async def close(self) -> None:
        """At the broker's stop: hand back the stash (shielded)."""
        self.leasing = False
        if self._stash:
            with trio.CancelScope(shield=True):
                await self._unfetch(self._take_stash())

    # -- background tasks -----------------------------------------------------------------

    async def sweep_stash(self) -> None:
        """Hand back jobs leased for workers that did not come for them (they stopped)."""
        while True:
            if not self._stash:
                self._stash_added = trio.Event()
                await self._stash_added.wait()
            await trio.sleep(STASH_MAX_AGE)
            horizon = trio.current_time() - STASH_MAX_AGE
            stale = [worker for worker, (_, at) in self._stash.items() if at <= horizon]
            if stale:
                await self._unfetch_shielded([self._stash.pop(worker)[0] for worker in stale])

    async def feed(self) -> None:
        """Lease jobs for every waiting worker in one call; sleep on the wake-up list if none."""
        node = self.node
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
            try:
                leases = await node.link.retry(partial(self._shielded_fetch, workers))
            except BrokerUnavailable:
                self._give_back(batch)
                await trio.sleep(node.link.backoff())  # stopping: the link is closed
                continue
            except Exception as exc:
                self._give_back(batch)
                await trio.sleep(node.link.task_failed("feeder", exc))
                continue
            served = self._hand_over(batch, leases)
            if served < len(batch) and len(leases.taken) < len(batch):
                await self._sleep_until_woken()

    async def _shielded_fetch(self, workers: list[str]) -> Leases:
        # Once sent, the call must come back: its leases would otherwise wait for expiry.
        node = self.node
        with trio.CancelScope(shield=True):
            leases = await node.scripts.fetch(node.now(), node.lease_ms, node.node_id, workers)
        return leases

    async def _sleep_until_woken(self) -> None:
        node = self.node
        try:
            await node.commands.blpop(node.keys.wake, node.poll_interval)
        except Exception as exc:
            await trio.sleep(node.link.task_failed("feeder", exc))
        else:
            node.link.succeeded()

    # -- hand-back and outcomes -----------------------------------------------------------

    def _spawn_unfetch(self, deliveries: list[Delivery]) -> None:
        if deliveries:
            self.node.spawn(self._unfetch_shielded, deliveries)

    async def _unfetch_shielded(self, deliveries: list[Delivery]) -> None:
        with trio.CancelScope(shield=True):
            await self._unfetch(deliveries)

    async def _unfetch(self, deliveries: list[Delivery]) -> None:
        async with trio.open_nursery() as nursery:
            for delivery in deliveries:
                nursery.start_soon(self.settle, delivery, OutcomeKind.UNFETCHED, "", "")

    async def settle(self, delivery: Delivery, kind: OutcomeKind, value: str, at: str) -> Settled:
        """Record one outcome of a leased job (batched with those recorded at the same moment);
        the lease is no longer this node's afterwards, whatever became of it."""
        job = delivery.job
        job_id = job.id
        token = delivery.token or ""
        worker = (job.worker_id or "") if kind.frees_worker else ""
        node = self.node
        node.settling.add(job_id)
        try:
            item = await self.outcomes.submit(Outcome(job_id, token, kind, value, at, worker))
        finally:
            node.settling.discard(job_id)
        active = node.active
        if active.get(job_id) == token:
            del active[job_id]
        node.lost.discard(job_id)
        return item

    async def record(
        self, delivery: Delivery, kind: OutcomeKind, value: str = "", at: str = ""
    ) -> Recording:
        """Record one outcome and say what became of it; never raises for Redis or a record."""
        job = delivery.job
        item = await self.settle(delivery, kind, value, at)
        result = item.result
        if isinstance(result, JobStatus):
            return Recording(RecordStatus.RECORDED, _applied(job, result, item.time))
        if isinstance(result, Job):
            return Recording(RecordStatus.LEASE_LOST, result)
        if isinstance(result, Corrupt):
            try:
                found = await self.node.quarantine(result)
            except BrokerUnavailable:
                return Recording(RecordStatus.NOT_RECORDED, job)
            return Recording(RecordStatus.LEASE_LOST, found or job)
        if item.time:  # written, and the job is gone (expired or deleted meanwhile)
            return Recording(RecordStatus.LEASE_LOST, job)
        return Recording(RecordStatus.NOT_RECORDED, job)

    async def _write_outcomes(
        self, outcomes: Sequence[Outcome]
    ) -> tuple[float, list[Finished]] | None:
        """One ``finish`` call for a batch, retried for ``outcome_timeout``; ``None`` if it
        could not be written (the jobs will run again when their leases expire)."""
        node = self.node
        now = 0.0
        # Lease the next job of each worker freed by these outcomes in the same call.
        workers = [o.worker for o in outcomes if o.worker] if self.leasing else []

        async def call() -> tuple[list[Finished], Leases]:
            nonlocal now
            now = node.now()
            return await node.scripts.finish(
                now,
                node.result_ttl,
                node.result_max_jobs,
                outcomes,
                lease_ms=node.lease_ms,
                node=node.node_id,
                workers=workers,
                failed_ttl=node.failed_ttl,
            )

        job_ids = [o.job_id for o in outcomes]
        try:
            with trio.CancelScope(shield=True):
                results, leases = await node.link.retry(call, budget=node.outcome_timeout)
        except NotReplicated as exc:
            # Applied by the master, not confirmed by its replicas: not counted (the job runs
            # again if a fail-over loses it); the next jobs it leased are leased all the same.
            self._stash_leased(workers, exc.leases)
            node.log.error(_NOT_RECORDED, job_ids=job_ids, error=exc.reason)
            return None
        except BrokerUnavailable as exc:
            node.log.error(_NOT_RECORDED, job_ids=job_ids, error=exc.reason)
            return None
        except Exception:
            node.log.exception(_NOT_RECORDED, job_ids=job_ids)
            return None
        self._stash_leased(workers, leases)
        return now, results

    def _stash_leased(self, workers: list[str], leases: Leases) -> None:
        at = trio.current_time()
        orphans: list[Delivery] = []
        for worker, leased in zip(workers, leases.taken, strict=False):
            if isinstance(leased, Corrupt):
                continue  # quarantined below: the worker fetches as usual
            delivery = self._hold(leased)
            if not self.leasing:
                orphans.append(delivery)  # stopped meanwhile
                continue
            previous = self._stash.get(worker)
            if previous is not None:
                orphans.append(previous[0])
            self._stash[worker] = (delivery, at)
        if self._stash and not self._stash_added.is_set():
            self._stash_added.set()
        self.node.quarantine_soon(leases.corrupt())
        self._spawn_unfetch(orphans)


def _applied(job: Job, status: JobStatus, completed_at: float) -> Job:
    """The worker's copy of ``job`` brought in line with a recorded ``status``."""
    job.status = status
    if status.is_final:
        job.completed_at = completed_at
    return job
