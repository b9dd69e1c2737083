"""Live job events: every change of a job's state and every progress report, as they happen,
for the HTTP event streams (``GET /events``, ``GET /jobs/{id}/events``).

:class:`EventHub` hears the processor's job events (it is one of its listeners, but only while
someone listens: with no subscriber and no relay publishing it is not in the listener list at
all, so the workers' hot path pays nothing for it). It makes of an event only what someone
takes: a :class:`Change` (a few values, nothing encoded) for the readers of every job, the
whole :class:`JobEvent` (the job's JSON, encoded once) for the readers of its job, the readers
of full records and the relay.

The readers of every job's events (``GET /events``) read one shared, bounded log, and read it
by *ticks*: the first event after a quiet spell opens a tick, and its readers wake once at its
end and take all of it at once, as one chunk of text that the hub builds once for all the
readers with the same filters and detail: a reader costs a wake-up and a send per tick whatever
the job rate, and an event costs the same with one reader or a hundred. By default a chunk
holds the newest state of each job that changed in the tick, as a *summary* (the fields a
dashboard shows, encoded when the tick ends: a job that was submitted, ran and ended within it
is encoded once), and a tick takes at most :data:`SUMMARY_RATE` changes a second: past that
the rest are counted, not kept, and the chunk says how many (``event: skipped``). A reader of
full records gets every event whole. A tick lasts :data:`TICK` seconds, longer with many
readers (:data:`TICK_PER_READER` each, :data:`MAX_TICK` at most), so that what the readers cost
the node stays bounded: a hundred dashboards see changes twice a second instead of twenty
times. A reader of one job's events (``GET /jobs/{id}/events``) has a small buffer of its own
and wakes at each of its job's events (they are few; a progress bar moves at once). When a
reader falls behind by more than the log (or its buffer) holds it is *dropped* (it ends, its
stream says so); a worker never waits for a client.

On a shared broker (Redis) a *relay* carries this node's events to the other nodes and theirs to
this hub (:mod:`trio_tasks.brokers._redis_events`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import trio

from ._event_json import (
    SUMMARY_SIZE,
    dumps,
    priority_name,
    progress_fragment,
    state_parts,
    status_name,
    summary_bytes,
    summary_of_json,
)
from ._job import Job, JobStatus, Priority

#: The kinds of :class:`JobEvent`.
STATE = "state"
PROGRESS = "progress"
#: The kind of the :class:`Change` that counts the changes a tick left out (see
#: :data:`SUMMARY_RATE`).
SKIPPED = "skipped"
#: The processor events (see :data:`trio_tasks._processor.Listener`) that change a job's state.
STATE_EVENTS = frozenset(
    {"submitted", "started", "completed", "failed", "retried", "cancelled", "requeued", "released"}
)
#: Where each status stands within one attempt (see :meth:`JobEvent.order`): the run, then
#: waiting for the next attempt (or, before the first, for the first), then the end.
_RANK = {
    JobStatus.RUNNING.value: 1,
    JobStatus.PENDING.value: 2,
    JobStatus.SCHEDULED.value: 2,
    JobStatus.COMPLETED.value: 3,
    JobStatus.FAILED.value: 3,
    JobStatus.CANCELLED.value: 3,
}
_FINAL = frozenset(s.value for s in JobStatus if s.is_final)

#: Seconds the events of every job are gathered before their readers wake: a dashboard does
#: not see 50 ms, and a reader then costs one wake-up and one send per tick, not per event.
TICK = 0.05
#: Seconds a tick lasts per reader of every job, when that is longer than :data:`TICK`: a
#: send costs the node ~100 µs (the HTTP server's layers, the socket, the bytes), so readers
#: times ticks per second is what they cost; 5 ms each keeps it near 2% of a core up to
#: :data:`MAX_TICK`.
TICK_PER_READER = 0.005
#: The longest tick (reached at 100 readers): a dashboard still moves twice a second.
MAX_TICK = 0.5
#: Changes a second that the summaries of every job's events take, at most (per tick: this
#: times its length). Past it, the rest of the tick's changes are only counted and the readers
#: get ``event: skipped`` with their number: a screen does not show thousands of jobs a
#: second, and what each reader costs the node (the bytes of every job, a hundred times) stays
#: bounded. Readers of full records get every change.
SUMMARY_RATE = 2000
#: Events a subscription may hold before its reader is dropped, and their bytes. An event is
#: encoded once and shared by every subscription holding it: a hundred readers lagging behind
#: the same events hold their bytes once. A batch submission (up to 1000 jobs) must fit, and so
#: must two of the longest ticks at 50,000 events a second.
MAX_EVENTS = 30_000
MAX_BYTES = 16 * 1_048_576


class JobEvent(NamedTuple):
    """One event, encoded once for every reader.

    ``kind`` is :data:`STATE` (``data`` is the job's JSON, as ``GET /jobs/{id}`` answers it) or
    :data:`PROGRESS` (``data`` is ``{"job_id", "type", "priority", "progress"}``). ``status``
    is the job's when the event happened, ``run`` its runs (queued again after failing: the
    length of ``errors``) and attempts then (see :attr:`order`); ``text`` is the whole
    ``event:``/``data:`` frame (UTF-8). A named tuple: one is made per event on the workers'
    path.
    """

    kind: str
    job_id: str
    job_type: str
    priority: str
    status: str
    run: tuple[int, int]
    data: bytes
    text: bytes

    @property
    def final(self) -> bool:
        """Whether this is the job's final state."""
        return self.kind == STATE and self.status in _FINAL

    @property
    def order(self) -> tuple[int, int, int]:
        """Where this state stands in the job's life: later states compare greater.

        Within one attempt: running, then waiting again (a retry, a release), then the end; the
        next attempt comes after, and a run queued again after its end after that. Used to skip
        a state older than one seen already (events of several nodes, or a lookup racing an
        event, may arrive late).
        """
        return _order(self.run, self.status)


class Change(NamedTuple):
    """One event as the shared log of the readers of every job holds it (see :class:`EventHub`).

    ``kind``, ``job_id``, ``job_type``, ``priority``, ``status`` and ``run`` are the
    :class:`JobEvent`'s. ``values`` are what a summary of the job needs, taken when the event
    happened (see :func:`~trio_tasks._event_json.summary_bytes`; ``None`` when only ``event``
    says it: a progress report, another node's state). ``event`` is the whole
    :class:`JobEvent` when something needs it (a reader of full records, the relay, a reader of
    the job; always for progress and for other nodes' events), else ``None``: a summary is far
    cheaper to take than a full record is to encode. ``size`` is about what it holds, in bytes.
    ``over`` marks a change past its tick's bound on summaries, kept for readers of full
    records only (summaries count it as skipped).
    """

    kind: str
    job_id: str
    job_type: str
    priority: str
    status: str
    run: tuple[int, int]
    values: Any
    size: int
    event: JobEvent | None
    over: bool = False

    @property
    def order(self) -> tuple[int, int, int]:
        """As :attr:`JobEvent.order`."""
        return _order(self.run, self.status)

    def summary_frame(self) -> bytes:
        """The frame of this event on a summary stream: a ``state`` event with the job's
        summary, or the progress event as it is."""
        values = self.values
        if values is not None:
            data = summary_bytes(self.job_id, self.job_type, self.priority, self.status, values)
            return b"event: state\ndata: %b\n\n" % data
        event = self.event
        assert event is not None
        if self.kind != STATE:
            return event.text
        return b"event: state\ndata: %b\n\n" % summary_of_json(event.data)


def _order(run: tuple[int, int], status: str) -> tuple[int, int, int]:
    return (*run, _RANK.get(status, 0))


def _change_of(event: JobEvent) -> Change:
    return Change(
        event.kind,
        event.job_id,
        event.job_type,
        event.priority,
        event.status,
        event.run,
        None,
        len(event.text),
        event,
        False,
    )


_HEADS = {STATE: b"event: state\ndata: ", PROGRESS: b"event: progress\ndata: "}


def make_event(
    kind: str,
    job_id: str,
    job_type: str,
    priority: str,
    status: str,
    run: tuple[int, int],
    data: bytes,
) -> JobEvent:
    """A :class:`JobEvent`, its frame included."""
    head = _HEADS.get(kind) or f"event: {kind}\ndata: ".encode()
    return JobEvent(kind, job_id, job_type, priority, status, run, data, head + data + b"\n\n")


def state_event(job: Job) -> JobEvent:
    """The :data:`STATE` event of ``job`` as it is now."""
    # On the workers' path (one per change of state while someone follows): built directly.
    priority, status, data = state_parts(job)
    return JobEvent(
        STATE,
        job.id,
        job.type,
        priority,
        status,
        (len(job.errors), job.attempts),
        data,
        b"event: state\ndata: %b\n\n" % data,
    )


def progress_event(job: Job) -> JobEvent:
    """The :data:`PROGRESS` event of ``job`` (its ``progress`` now)."""
    priority = priority_name(job.priority)
    data = {"job_id": job.id, "type": job.type, "priority": priority, "progress": job.progress}
    return make_event(
        PROGRESS,
        job.id,
        job.type,
        priority,
        status_name(job.status),
        (len(job.errors), job.attempts),
        dumps(data),
    )


class Relay(Protocol):
    """Carries events between the nodes sharing a broker (attached by the broker)."""

    @property
    def publishing(self) -> bool:
        """Whether this node's events are wanted elsewhere (some node follows events)."""

    def publish(self, event: JobEvent) -> None:
        """Send one event of this node to the others; must never block nor raise."""

    def subscribers_changed(self, count: int) -> None:
        """This node's subscriptions now number ``count`` (0: the others' events are not
        needed here)."""

    async def ready(self) -> None:
        """Return once the other nodes' events reach the hub (or, briefly bounded, never)."""


class Subscription:
    """One reader of events (a stream), with the filters it asked for.

    ``job_id``, ``job_type``, ``status`` and ``priority`` select events (``None``: any);
    ``status`` applies to state events only. A reader of every job gets, for each tick, the
    newest event of each job that changed in it, its state as a *summary* (see
    :data:`~trio_tasks._event_json.SUMMARY_FIELDS`), and ``event: skipped`` when the tick took
    fewer changes than happened (:data:`SUMMARY_RATE`); with ``full`` it gets every event, each
    state as the job's whole JSON (as :class:`JobEvent`'s ``text``). A reader of one job reads
    with :meth:`next_batch`, a reader of every job with :meth:`next_chunk`; :meth:`close` when
    done. :attr:`dropped` is true once the reader fell too far behind; a subscription ends when
    dropped, closed, or when the hub closes (the node stops: what it holds is still read).
    ``on_drop`` is called when it is dropped.
    """

    __slots__ = (
        "_hub",
        "_lot",
        "_queue",
        "_queued_bytes",
        "cursor",
        "dropped",
        "ended",
        "filters",
        "full",
        "job_id",
        "job_type",
        "on_drop",
        "priority",
        "status",
    )

    def __init__(
        self,
        hub: EventHub,
        *,
        job_id: str | None = None,
        job_type: str | None = None,
        status: str | None = None,
        priority: str | None = None,
        full: bool = False,
    ) -> None:
        self._hub = hub
        self.full = full
        self.job_id = job_id
        self.job_type = job_type
        self.status = status
        self.priority = priority
        #: The filters as one value (``None``: none); readers with equal filters (and detail)
        #: share chunks.
        self.filters = (
            None
            if job_type is None and status is None and priority is None
            else (job_type, status, priority)
        )
        #: The sequence number of the next event of the shared log to read (readers of every
        #: job); readers of one job have a queue of their own instead.
        self.cursor = hub.next_seq
        self._queue: deque[JobEvent] = deque()
        self._queued_bytes = 0
        self._lot = hub.lot if job_id is None else trio.lowlevel.ParkingLot()
        self.dropped = False
        self.ended = False
        self.on_drop: Callable[[], None] | None = None

    def takes(self, kind: str, job_type: str, priority: str, status: str) -> bool:
        """Whether an event of this kind, job type, priority and status passes the filters."""
        return (
            (self.job_type is None or job_type == self.job_type)
            and (self.priority is None or priority == self.priority)
            and (self.status is None or kind != STATE or status == self.status)
        )

    def matches(self, event: JobEvent | Change) -> bool:
        """Whether ``event`` passes this subscription's filters."""
        return self.takes(event.kind, event.job_type, event.priority, event.status)

    def offer(self, event: JobEvent) -> None:
        """Queue ``event`` (a reader of one job); drop the subscription if its queue is full."""
        queue = self._queue
        size = len(event.text)
        hub = self._hub
        # One event alone always fits: a large job must not drop every reader of it.
        if queue and (len(queue) >= hub.max_events or self._queued_bytes + size > hub.max_bytes):
            self.drop()
            return
        queue.append(event)
        self._queued_bytes += size
        if len(queue) == 1:
            self._lot.unpark_all()

    async def next_batch(self) -> list[JobEvent]:
        """Wait for events of this subscription's job and return all of those that arrived;
        ``[]`` once the subscription has ended (dropped or closed: nothing more will come)."""
        while not self._queue and not self.ended:
            await self._lot.park()
        # Ended by the hub's close (the node stops): what came before still goes out.
        keep = not self.ended or (self._hub.closed and not self.dropped)
        batch = list(self._queue) if keep else []
        self._queue.clear()
        self._queued_bytes = 0
        if not batch:
            await trio.lowlevel.checkpoint()
        return batch

    async def next_chunk(self) -> bytes:
        """Wait for the end of the next tick with events for this reader of every job, and
        return their frames, one text; ``b""`` once the subscription has ended."""
        hub = self._hub
        while True:
            if self.ended:
                if hub.closed and not self.dropped and hub.sealed(self.cursor, final=True):
                    return hub.read(self)  # the last events before the node stopped
                break
            if self.cursor == hub.next_seq:
                await self._lot.park()
                continue
            if not hub.sealed(self.cursor):
                await trio.sleep_until(hub.due)
                continue
            chunk = hub.read(self)
            if chunk:
                return chunk
        await trio.lowlevel.checkpoint()
        return b""

    def drop(self) -> None:
        """End this subscription as too slow (its stream says so)."""
        if self.ended:
            return
        self.dropped = True
        self._hub.dropped(self)
        self.close()
        if self.on_drop is not None:
            self.on_drop()

    def close(self) -> None:
        """Stop receiving events (idempotent)."""
        if not self.ended:
            self.ended = True
            self._hub.unsubscribe(self)
            self._lot.unpark_all()


class EventHub:
    """This node's job events, offered to its subscriptions and to a relay.

    ``listeners`` is the processor's listener list: the hub adds itself to it while it has
    subscriptions or a relay that publishes, and takes itself out when it has neither.
    ``max_events`` and ``max_bytes`` bound the shared log (how far a reader of every job may
    fall behind) and the queue of each reader of one job; ``tick`` is :data:`TICK` (the shortest
    tick, see :meth:`tick_length`); ``summary_rate`` is :data:`SUMMARY_RATE`.

    All methods must be called from the processor's Trio thread.
    """

    def __init__(
        self,
        listeners: list[Callable[[str, Job], None]],
        log: Any,
        *,
        max_events: int = MAX_EVENTS,
        max_bytes: int = MAX_BYTES,
        tick: float = TICK,
        summary_rate: int = SUMMARY_RATE,
    ) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.tick = tick
        self._listeners = listeners
        self._log = log
        #: Where the readers of every job wait for the next tick to open.
        self.lot = trio.lowlevel.ParkingLot()
        # The shared log: events[i] has sequence number base + i; those before _sealed belong
        # to ticks that ended, the others to the open tick, which ends at `due`.
        self._events: list[Change] = []
        self._base = 0
        self._sealed = 0
        self._open = False
        #: When the open tick ends.
        self.due = float("inf")
        self._bytes = 0
        self._check_at = 1
        # The chunks read since the last seal, by (first sequence number, filters, full).
        self._chunks: dict[tuple[int, Any, bool], bytes] = {}
        # The order (JobEvent.order) of the latest state of each job seen lately.
        self._latest: dict[str, tuple[int, int, int]] = {}
        # Tuples, rebuilt on (rare) changes: offering iterates them while a drop may unsubscribe.
        self._all: tuple[Subscription, ...] = ()
        self._filtered: tuple[Subscription, ...] = ()
        self._distinct: tuple[Subscription, ...] = ()
        self._unfiltered = 0
        # Readers of every job's full records: while there are none, no record is encoded.
        self._full = 0
        # Whether every change takes the short way, and whether only readers of single jobs
        # listen (see on_job_event).
        self._plain = False
        self._followed_only = False
        #: Changes a second the summaries take at most (:data:`SUMMARY_RATE`).
        self.summary_rate = summary_rate
        # The open tick's bound on the changes it takes, those it took, and the marker that
        # counts those it left out.
        self._limit = 1
        self._taken = 0
        # The jobs whose changes the open tick took: their later changes in it are taken past
        # the bound too (they coalesce: a summary shows a job's newest state, never a stale one).
        self._tick_jobs: set[str] = set()
        self._skipped: Change | None = None
        #: Changes left out of the summaries, since start.
        self.skipped_count = 0
        self._by_job: dict[str, tuple[Subscription, ...]] = {}
        self._count = 0
        self._relay: Relay | None = None
        self._closed = False
        self._delivering = False
        #: Subscriptions dropped for reading too slowly, since start.
        self.dropped_count = 0

    @property
    def next_seq(self) -> int:
        """The sequence number the next event of the shared log gets."""
        return self._base + len(self._events)

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return self._count

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (the processor stopped)."""
        return self._closed

    def subscribe(
        self,
        *,
        job_id: str | None = None,
        job_type: str | None = None,
        status: str | None = None,
        priority: str | None = None,
        full: bool = False,
    ) -> Subscription:
        """A new subscription to the events of ``job_id`` (any job if ``None``) matching the
        filters, from now on (see :class:`Subscription` for ``full``). After :meth:`close` it
        is born ended."""
        subscription = Subscription(
            self, job_id=job_id, job_type=job_type, status=status, priority=priority, full=full
        )
        if self._closed:
            subscription.ended = True
            return subscription
        if job_id is None:
            self._all = (*self._all, subscription)
            self._split()
            self._skipped = None  # its cursor is past the tick's marker: count in a new one
        else:
            self._by_job[job_id] = (*self._by_job.get(job_id, ()), subscription)
        self._count += 1
        self._changed()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget ``subscription`` (called when it ends)."""
        job_id = subscription.job_id
        if job_id is None:
            if subscription not in self._all:
                return
            self._all = tuple(s for s in self._all if s is not subscription)
            self._split()
            if not self._all and not self._closed:
                # Nobody reads them any more (at a close, the readers still take the rest).
                self._base += len(self._events)
                self._sealed = self._base
                self._events.clear()
                self._chunks.clear()
                self._open = False
                self.due = float("inf")
                self._bytes = 0
                self._check_at = 1
        else:
            found = self._by_job.get(job_id, ())
            if subscription not in found:
                return
            rest = tuple(s for s in found if s is not subscription)
            if rest:
                self._by_job[job_id] = rest
            else:
                del self._by_job[job_id]
        self._count -= 1
        self._changed()

    def _split(self) -> None:
        self._filtered = tuple(s for s in self._all if s.filters is not None)
        self._unfiltered = len(self._all) - len(self._filtered)
        self._full = sum(s.full for s in self._all)
        self._plain_or_not()
        # One reader of each set of filters: a hundred readers of ?status=failed cost one test.
        self._distinct = tuple({s.filters: s for s in self._filtered}.values())

    def dropped(self, subscription: Subscription) -> None:
        """Note that ``subscription`` was dropped (its reader was too slow)."""
        self.dropped_count += 1
        self._log.info(
            "event stream dropped: the client reads too slowly", job_id=subscription.job_id
        )

    # -- ticks -----------------------------------------------------------------------------

    def tick_length(self) -> float:
        """Seconds the next tick lasts: :attr:`tick`, or :data:`TICK_PER_READER` per reader of
        every job when longer, :data:`MAX_TICK` at most."""
        return max(self.tick, min(MAX_TICK, len(self._all) * TICK_PER_READER))

    def sealed(self, cursor: int, *, final: bool = False) -> bool:
        """Whether events from ``cursor`` on may be read now: some belong to a tick that has
        ended (the open one ends here if its time has come, or if ``final``)."""
        if cursor >= self._sealed and self._open and (final or trio.current_time() >= self.due):
            self._seal()
        return self._sealed > cursor

    def _seal(self) -> None:
        self._sealed = self.next_seq
        self._open = False
        self.due = float("inf")
        self._chunks.clear()

    def read(self, subscription: Subscription) -> bytes:
        """The frames of the events of ended ticks that ``subscription`` has not read, filtered,
        as one text (built once for every reader at the same place with the same filters and
        detail); moves its cursor past them."""
        start = subscription.cursor
        end = self._sealed
        subscription.cursor = end
        full = subscription.full
        key = (start, subscription.filters, full)
        chunk = self._chunks.get(key)
        if chunk is None:
            changes = self._events[max(start - self._base, 0) : end - self._base]
            if subscription.filters is not None:
                matches = subscription.matches
                changes = [c for c in changes if c.kind == SKIPPED or matches(c)]
            chunk = _full_text(changes) if full else _summary_text(changes)
            self._chunks[key] = chunk
        return chunk

    async def ready(self) -> None:
        """Return once events of the other nodes reach this hub too (at once on a broker of
        one node). Call it after :meth:`subscribe` and before looking a job up, so that no
        event between the lookup and the stream is missed."""
        relay = self._relay
        if relay is None:
            await trio.lowlevel.checkpoint()
            return
        await relay.ready()

    def attach(self, relay: Relay) -> None:
        """Send every event to ``relay`` too (while it publishes), and take the other nodes'
        events from it."""
        self._relay = relay
        self._changed()

    def detach(self, relay: Relay) -> None:
        """Stop using ``relay`` (its broker stopped)."""
        if self._relay is relay:
            self._relay = None
            self._changed()

    def relay_changed(self) -> None:
        """The relay started or stopped publishing."""
        self._changed()

    def close(self) -> None:
        """End every subscription, and every later one at once (the processor stopped); what
        they hold is still read."""
        self._closed = True
        for subscription in [*self._all, *(s for subs in self._by_job.values() for s in subs)]:
            subscription.close()

    # -- events ----------------------------------------------------------------------------

    def on_job_event(self, name: str, job: Job) -> None:
        """The processor's listener: take ``(name, job)`` as a :class:`Change` for the readers
        of every job, as a :class:`JobEvent` for those who need it whole (the job's readers,
        readers of full records, the relay), and hand it on. Only what someone takes is made."""
        if self._followed_only and job.id not in self._by_job:
            return  # only readers of single jobs, and none of this one
        if self._plain and name in STATE_EVENTS and job.id not in self._by_job:
            # The common case, kept short (it runs for every change of every job): readers
            # of every job's summaries, unfiltered, and no relay; the log takes the change.
            job_id = job.id
            if not self._open:
                self._open_tick()
            elif self._taken >= self._limit and job_id not in self._tick_jobs:
                self._skip()
                return
            self._taken += 1
            self._tick_jobs.add(job_id)
            noted = _state_change(job, None)
            events = self._events
            events.append(noted)
            self._bytes += noted.size
            if len(events) >= self._check_at or self._bytes > self.max_bytes:
                self._delivering = True
                try:
                    self._trim()
                finally:
                    self._delivering = False
                if not self._count:
                    self._changed()  # the last subscription was dropped just now
            return
        kind = _KINDS.get(name)
        if kind is None:
            return
        relay = self._relay
        publish = relay is not None and relay.publishing
        shared = bool(self._unfiltered) or self._takes(kind, job)
        followed = job.id in self._by_job
        if not (publish or shared or followed):
            if not self._count and not publish:
                self._changed()  # the last subscription was dropped just now
            return
        event: JobEvent | None
        if kind == PROGRESS:
            event = progress_event(job)
            change = _change_of(event) if shared else None
        else:
            whole = publish or followed or (shared and self._full > 0)
            event = state_event(job) if whole else None
            change = _state_change(job, event) if shared else None
        # The processor is iterating its listener list: a drop meanwhile must not edit it.
        self._delivering = True
        try:
            self._deliver(event, change)
        finally:
            self._delivering = False
        if publish:
            assert relay is not None
            assert event is not None
            relay.publish(event)
        elif not self._count:
            self._changed()  # the last subscription was dropped just now

    def _takes(self, kind: str, job: Job) -> bool:
        # Whether a filtered reader of every job takes this event (before making it).
        if not self._distinct:
            return False
        priority = priority_name(job.priority)
        status = status_name(job.status)
        return any(s.takes(kind, job.type, priority, status) for s in self._distinct)

    def deliver(self, event: JobEvent) -> None:
        """Offer ``event`` to this node's subscriptions (the relay calls it with the other
        nodes' events). A state older than one of the same job seen already (another node's,
        arriving late) is not offered to the readers of every job."""
        shared = bool(self._unfiltered) or any(s.matches(event) for s in self._distinct)
        self._deliver(event, _change_of(event) if shared else None)

    def _deliver(self, event: JobEvent | None, change: Change | None) -> None:
        # ``change``: for the shared log (some reader of every job takes it); ``event``: for
        # the readers of its job. Only another node's event can arrive late (this node's come
        # in order): with no relay there is no order to check.
        relay = self._relay is not None
        if change is not None and (change.kind != STATE or not relay or self._newest(change)):
            if not self._open:
                self._open_tick()
            elif self._taken >= self._limit and change.job_id not in self._tick_jobs:
                if self._full:
                    change = change._replace(over=True)  # for the readers of full records
                else:
                    self._skip()
                    change = None
            if change is not None:
                if not change.over:
                    self._taken += 1
                    self._tick_jobs.add(change.job_id)
                events = self._events
                events.append(change)
                self._bytes += change.size
                if len(events) >= self._check_at or self._bytes > self.max_bytes:
                    self._trim()
        elif event is not None and event.kind == STATE and relay:
            self._newest(event)  # still the latest state seen of its job
        if event is not None and self._by_job:
            for subscription in self._by_job.get(event.job_id, ()):
                subscription.offer(event)

    def _open_tick(self) -> None:
        # The first event of a tick: its readers wake at its end.
        self._open = True
        length = self.tick_length()
        self.due = trio.current_time() + length
        self._limit = max(1, round(self.summary_rate * length))
        self._taken = 0
        self._tick_jobs.clear()
        self._skipped = None
        self.lot.unpark_all()

    def _skip(self) -> None:
        # One more change this tick leaves out: counted by a marker in the log, where the
        # first one was left out (or after a reader subscribed since: it must see a marker).
        marker = self._skipped
        if marker is None:
            marker = self._skipped = _new_change(
                Change, (SKIPPED, "", "", "", "", (0, 0), [0], SUMMARY_SIZE, None, False)
            )
            self._events.append(marker)
            self._bytes += marker.size
        assert marker.values is not None
        marker.values[0] += 1
        self.skipped_count += 1

    def _newest(self, event: JobEvent | Change) -> bool:
        latest = self._latest
        order = event.order
        seen = latest.get(event.job_id)
        if seen is not None and order < seen:
            return False
        latest[event.job_id] = order
        if len(latest) > _LATEST_KEPT:
            del latest[next(iter(latest))]  # the job seen least recently first
        return True

    def _trim(self) -> None:
        # Now and then (see deliver): forget what every reader has read; past the bounds, keep
        # only the newest three quarters of them and drop the readers that had not read the rest.
        self._skipped = None  # the open tick's marker may go: the next skip makes another
        events = self._events
        keep_from = min(s.cursor for s in self._all) - self._base
        removed = sum(e.size for e in events[:keep_from])
        if len(events) - keep_from > self.max_events or self._bytes - removed > self.max_bytes:
            first = max(keep_from, len(events) - self.max_events * 3 // 4)
            removed += sum(e.size for e in events[keep_from:first])
            keep_from = first
            while self._bytes - removed > self.max_bytes * 3 // 4 and keep_from < len(events) - 1:
                removed += events[keep_from].size
                keep_from += 1
        if keep_from > 0:
            self._bytes -= removed
            del events[:keep_from]
            self._base += keep_from
            if self._sealed < self._base:
                self._sealed = self._base
                self._chunks.clear()
        for subscription in self._all:
            if subscription.cursor < self._base:
                subscription.drop()
        self._check_at = len(events) + max(1, min(_CHECK_EVERY, self.max_events // 4))

    def _plain_or_not(self) -> None:
        alone = self._relay is None  # no other node's events to take or to send
        self._plain = self._unfiltered > 0 and self._full == 0 and not self._filtered and alone
        self._followed_only = not self._all and alone

    def _changed(self) -> None:
        # In the processor's listener list only while someone listens: the workers' hot path
        # (``if listeners:``) pays nothing for events nobody reads.
        self._plain_or_not()
        relay = self._relay
        wanted = self._count > 0 or (relay is not None and relay.publishing)
        listener = self.on_job_event
        present = listener in self._listeners
        if wanted and not present:
            self._listeners.append(listener)
        elif not wanted and present and not self._delivering:
            self._listeners.remove(listener)
        if relay is not None:
            relay.subscribers_changed(self._count)


_KINDS = {"progress": PROGRESS, **dict.fromkeys(STATE_EVENTS, STATE)}


def _state_change(job: Job, event: JobEvent | None) -> Change:
    # On the workers' path (one per change of state while someone follows every job): the
    # values a summary needs, nothing encoded; built without the named tuple's constructor
    # (half its cost).
    progress = job.progress
    size = SUMMARY_SIZE
    encoded = None
    kind = type(progress)
    if kind not in _SCALARS or (kind is int and not _INT_MIN <= progress <= _INT_MAX):
        # Not a plain number: encoded now (see progress_fragment); an integer beyond 64 bits
        # too (it may take kilobytes, and orjson refuses it).
        progress, encoded = progress_fragment(progress)
        size += len(encoded)
    error = job.error
    if error is not None:
        size += len(error.message)
    job_id = job.id
    job_type = job.type
    if event is not None:
        size += len(event.text)
    return _new_change(
        Change,
        (
            STATE,
            job_id,
            job_type,
            _PRIORITY_NAMES[job.priority],
            _STATUS_NAMES[job.status],
            (len(job.errors), job.attempts),
            (
                job.attempts,
                job.max_attempts,
                progress,
                job.created_at,
                job.completed_at,
                error,
                encoded,
            ),
            size + len(job_id) + len(job_type),
            event,
            False,
        ),
    )


_new_change = tuple.__new__
_SCALARS = frozenset({float, int, bool, type(None)})
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_PRIORITY_NAMES = {priority: priority_name(priority) for priority in Priority}
_STATUS_NAMES = {status: status_name(status) for status in JobStatus}


def _full_text(changes: list[Change]) -> bytes:
    # Every event whole (a reader of full records subscribed before any of these was made,
    # so each has its JobEvent).
    return b"".join([change.event.text for change in changes if change.event is not None])


def _summary_text(changes: list[Change]) -> bytes:
    # The newest state and the newest progress of each job, in the order of their last change:
    # a job that was submitted, ran and ended within the tick is seen once, ended.
    newest: dict[Any, Change] = {}
    skipped = 0
    for change in changes:
        kind = change.kind
        if kind == SKIPPED:
            skipped += change.values[0]
            continue
        if change.over:
            skipped += 1
            continue
        key = change.job_id if kind == STATE else (change.job_id,)
        newest.pop(key, None)
        newest[key] = change
    parts = []
    for change in newest.values():
        try:
            parts.append(change.summary_frame())
        except Exception:
            # A value no encoder takes must not end every reader's stream: that job's change
            # is counted as left out (its own stream and GET /jobs/{id} say what they can).
            skipped += 1
    if skipped:
        parts.append(b'event: skipped\ndata: {"changes":%d}\n\n' % skipped)
    return b"".join(parts)


#: Jobs whose latest state the hub remembers (to skip late states of another node).
_LATEST_KEPT = 65_536
#: How often (in events, at most) the shared log is trimmed and checked for laggards.
_CHECK_EVERY = 1024
