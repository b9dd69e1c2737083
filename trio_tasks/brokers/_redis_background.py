"""The Redis broker's background tasks on one node.

- the *heartbeat* registers the node (its workers and counters, for the cluster view) and
  renews all of its leases in one call every ``lease / 3``;
- *maintenance* promotes due scheduled jobs and reaps expired leases (any node may; the Lua
  functions make each move happen once), and quarantines the corrupt records the reaper finds;
- the *listener* receives cancellations (and ends of awaited jobs) over pub/sub.

None of them stops the node over one bad item or answer: a lost connection is retried with
backoff (``/health`` reports it), any other error is logged once and the task goes on.
"""

from __future__ import annotations

import json
from functools import partial

import attrs
import trio

from .._errors import BrokerUnavailable, JobNotFound, ShuttingDown
from .._job import Job
from ._redis_codec import Corrupt, decode_job_array, encode_json
from ._redis_keys import LIBRARY_VERSION
from ._redis_link import cancelled_part, is_transient
from ._redis_node import RedisNode

_LEASE_EXPIRED = encode_json(
    {"message": "lease expired: its node stopped renewing it", "type": "LeaseExpired"}
)
#: A node is taken for gone after this many heartbeats missed.
NODE_TTL_BEATS = 3
#: After a submission or an outcome, the node's registry entry (its counters) is refreshed
#: this many seconds later at the latest, so the cluster view follows closely.
REGISTRY_REFRESH = 0.05


class Background:
    """The heartbeat, maintenance and listener of one node, and waiting for the end of a job
    (announced to the listener)."""

    def __init__(self, node: RedisNode, *, retry_cap: float) -> None:
        self.node = node
        #: Leases may be reaped only after this node has reached Redis for this long without a
        #: break: long enough for every live node to renew its leases after an outage.
        self.reap_grace = node.lease + retry_cap
        self._maintenance_wake: trio.CancelScope | None = None
        self._beat_wake: trio.CancelScope | None = None

    @property
    def period(self) -> float:
        """Seconds between heartbeats."""
        return self.node.lease / 3

    def node_info(self) -> str:
        """This node's registry entry: its id, the time, its workers and its counters."""
        node = self.node
        host = node.host
        assert host is not None
        return json.dumps(
            {
                "id": node.node_id,
                "library": LIBRARY_VERSION,
                "seen_at": node.now(),
                "workers": [attrs.asdict(w) for w in host.workers()],
                "counters": host.counters(),
            },
            separators=(",", ":"),
        )

    async def beat(self, *, renew: bool = True) -> None:
        """One heartbeat (the node's first, at start, makes it show up at once); with
        ``renew=False`` only the registry entry is refreshed."""
        node = self.node
        leases = list(node.active.items()) if renew else []
        codes = await node.scripts.heartbeat(
            node.lease_ms, node.node_id, NODE_TTL_BEATS * self.period, self.node_info(), leases
        )
        node.link.succeeded()
        for (job_id, token), code in zip(leases, codes, strict=True):
            if node.active.get(job_id) != token:
                continue
            if code == 2:
                node.on_cancel(job_id)
            elif code == 0 and job_id not in node.lost and job_id not in node.settling:
                node.lost.add(job_id)
                node.log.warning("lease lost: the job may run again elsewhere", job_id=job_id)

    async def heartbeat(self) -> None:
        """:meth:`beat` every ``lease / 3`` (sooner again after a failure, with backoff)."""
        due = trio.current_time() + self.period
        while True:
            with trio.CancelScope(deadline=due) as self._beat_wake:
                await trio.sleep_forever()
            self._beat_wake = None
            now = trio.current_time()
            renew = now >= due  # else woken early by touch(): the registry entry only
            if renew:
                due = now + self.period
            try:
                await self.beat(renew=renew)
            except Exception as exc:
                due = min(due, now + self.node.link.task_failed("heartbeat", exc))

    def touch(self) -> None:
        """This node's counters changed: beat within :data:`REGISTRY_REFRESH` seconds."""
        scope = self._beat_wake
        if scope is not None:
            soon = trio.current_time() + REGISTRY_REFRESH
            if scope.deadline > soon:
                scope.deadline = soon

    async def leave(self) -> None:
        """Take this node out of the registry (a clean stop; best effort, shielded, brief)."""
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            try:
                await self.node.scripts.leave(self.node.node_id)
            except Exception as exc:
                self.node.log.debug("node registry entry not removed", error=str(exc))

    def promote_by(self, run_at: float) -> None:
        """Make maintenance look again no later than ``run_at`` (a job is scheduled then)."""
        scope = self._maintenance_wake
        host = self.node.host
        if scope is not None and host is not None:
            scope.deadline = min(scope.deadline, host.clock.to_trio(run_at))

    async def maintain(self) -> None:
        """Promote due scheduled jobs and reap expired leases, every ``poll_interval`` at most."""
        node = self.node
        period = min(node.poll_interval, node.lease / 2)
        while True:
            deadline = trio.current_time() + period
            try:
                due = await self._maintain_once()
            except Exception as exc:
                deadline = trio.current_time() + node.link.task_failed("maintenance", exc)
            else:
                node.link.succeeded()
                if due is not None and node.host is not None:
                    deadline = min(deadline, node.host.clock.to_trio(due))
            with trio.CancelScope(deadline=deadline) as self._maintenance_wake:
                await trio.sleep_forever()
            self._maintenance_wake = None

    async def _maintain_once(self) -> float | None:
        node = self.node
        _, due = await node.scripts.promote(node.now())
        if node.link.stable_for >= self.reap_grace:
            reaped, corrupt = await node.scripts.reap(
                node.now(),
                node.result_ttl,
                node.result_max_jobs,
                _LEASE_EXPIRED,
                failed_ttl=node.failed_ttl,
            )
            if reaped:
                node.log.warning("leases expired: jobs taken back", job_ids=reaped)
            if corrupt:
                await node.quarantine_all(
                    [Corrupt(i, "reaped with a corrupt record") for i in corrupt]
                )
        return due

    async def listen(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Receive cancellations and ends of awaited jobs; resubscribe after a lost connection."""
        node = self.node
        started = False
        channels = [node.keys.cancel_channel, node.keys.done_channel]
        while True:
            try:
                async with node.commands.subscribe(channels) as messages:
                    if not started:
                        started = True
                        task_status.started()
                    async for channel, data in messages:
                        self.dispatch(channel, str(data))
            except BaseException as exc:
                pause = self._listener_failed(exc)
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep(pause)

    def _listener_failed(self, exc: BaseException) -> float:
        """The pause after the listener's connection or a message failed; re-raises a
        cancellation (and anything that is not an ``Exception``)."""
        cancelled = None if is_transient(exc) else cancelled_part(exc)
        if cancelled is not None:
            raise cancelled from None  # stopping: the connection's end is noise
        if not isinstance(exc, Exception):
            raise exc
        return self.node.link.task_failed("listener", exc)

    def dispatch(self, channel: str, message: str) -> None:
        """Act on one pub/sub message: a job id to cancel, or an awaited job's id and its final
        record (``id\\n[values]``, see ``finish`` in ``_redis.lua``)."""
        node = self.node
        if channel == node.keys.cancel_channel:
            node.remember_cancel(message)
        else:
            job_id, _, record = message.partition("\n")
            waiting = node.done.get(job_id)
            if waiting is not None:
                waiting[2] = record or None
                waiting[0].set()

    async def _watch(self, job_id: str) -> Job | None:
        return await self.node.resolve(await self.node.scripts.watch(job_id))

    async def wait(self, job_id: str) -> Job:
        """Wait for the job's end, announced on the done channel (re-read every
        ``poll_interval`` in case an announcement is lost). Waits through Redis outages.

        Raises:
            JobNotFound: no such job.
            ShuttingDown: this node's broker stopped before the job ended (the job itself
                stays in Redis for the other nodes).
        """
        node = self.node
        done = node.done
        waiting = done.get(job_id)
        if waiting is None:
            # [announced, waiters, the final record the announcement carried]
            waiting = done[job_id] = [trio.Event(), 0, None]
        waiting[1] += 1
        job: Job | None = None
        try:
            while True:
                event: trio.Event = waiting[0]
                announced = waiting[2]
                if announced is not None:
                    # The record came with the announcement: no second round trip.
                    found = decode_job_array(announced, job_id)
                    if isinstance(found, Job) and found.status.is_final:
                        return found
                if node.link.closed:
                    status = "unfinished" if job is None else job.status.value
                    raise ShuttingDown(
                        f"job {job_id!r} is still {status}: this node stopped (the job stays "
                        "in Redis for the other nodes)"
                    )
                try:
                    job = await node.link.retry(partial(self._watch, job_id))
                except BrokerUnavailable:
                    # Stopped (ShuttingDown above), or a quarantine found Redis away.
                    if not node.link.closed:
                        await trio.sleep(node.link.backoff())
                    continue
                if job is None:
                    raise JobNotFound(job_id)
                if job.status.is_final:
                    return job
                with trio.move_on_after(node.poll_interval):
                    await event.wait()
                if event.is_set():
                    waiting[0] = trio.Event()
        finally:
            waiting[1] -= 1
            if waiting[1] == 0 and done.get(job_id) is waiting:
                del done[job_id]
