"""Job events across the nodes sharing a Redis: a node PUBLISHes its own on one channel of the
namespace (``tt:{<namespace>}:events``) while another node follows events, and, while it has
subscribers of its own, receives the others'.

- *The gate*: nothing is published while no other node has subscribers. A node that receives
  keeps itself in the sorted set ``tt:{<namespace>}:events:listeners`` (member: its node id,
  score: when its entry expires, :data:`LISTENER_TTL` seconds on), refreshed every
  :data:`GATE_INTERVAL` seconds; every node reads that set as often (one command a second) and
  publishes while it names another node. A node whose clients start following events thus gets
  the others' within about :data:`GATE_INTERVAL` seconds; with nobody following anywhere, the
  workers pay nothing (the hub is not even a listener) and Redis sees no ``PUBLISH``.
- *Sending* never blocks a worker: :meth:`RedisEvents.publish` appends the encoded message to a
  bounded buffer that a background task drains, many messages a round trip (a pipeline).
  When Redis is slower than the events come (or away), the buffer fills and further events are
  dropped, with one warning line until it drains again: events are best effort; job records
  and the streams' look-ups (``RECHECK``) stay right.
- *Receiving* costs a node nothing while nobody follows events there: it subscribes when its
  hub gets its first subscriber and unsubscribes :data:`IDLE_UNSUBSCRIBE` seconds after the
  last one left (its entry in the set goes with it). A message from this node itself is
  skipped: its subscribers had the event directly from the hub.

A message is ``<node id>\\n<kind>\\n<data>``: the data is the JSON line the streams send, so a
receiving node decodes it only to filter.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import orjson
import trio

from .._events import STATE, EventHub, JobEvent, make_event
from ._redis_link import cancelled_part, is_transient
from ._redis_node import RedisNode

#: Messages waiting to be published, at most; more are dropped.
MAX_OUTGOING = 10_000
#: Messages published per round trip, at most.
BATCH = 256
#: Seconds the subscription is kept after the last subscriber left (a client reconnecting, a
#: dashboard reloading, do not resubscribe every time).
IDLE_UNSUBSCRIBE = 30.0
#: Seconds the events left at a stop may take to be sent.
FLUSH_TIMEOUT = 1.0
#: Seconds a new stream waits at most for the subscription to be confirmed.
READY_TIMEOUT = 2.0
#: Seconds between two looks at (and refreshes of) the set of nodes that follow events.
GATE_INTERVAL = 1.0
#: Seconds a node's entry in that set lasts unless refreshed (a node that died leaves it).
LISTENER_TTL = 10.0


class RedisEvents:
    """The relay of one node's :class:`~trio_tasks._events.EventHub` over Redis pub/sub.

    Run :meth:`send`, :meth:`receive` and :meth:`gate` in the broker's nursery; :meth:`attach`
    it to the hub once they run and detach it when they stop.
    """

    def __init__(self, node: RedisNode, hub: EventHub, *, max_outgoing: int = MAX_OUTGOING):
        self.node = node
        self.hub = hub
        self.channel = node.keys.prefix + "events"
        #: The sorted set of the nodes that follow events (see the module docstring).
        self.listeners_key = node.keys.prefix + "events:listeners"
        self.max_outgoing = max_outgoing
        self._origin = node.node_id
        self._prefix = f"{node.node_id}\n".encode()
        self._outgoing: deque[bytes] = deque()
        self._has_outgoing = trio.lowlevel.ParkingLot()
        self._overflowing = False
        #: Events not published because the buffer was full, since start.
        self.lost = 0
        #: Events published (handed to Redis), since start.
        self.published = 0
        self._wanted = trio.Event()
        self._subscribed = trio.Event()
        self._idle: trio.CancelScope | None = None
        self._publishing = False
        self._listening = False
        self._announced = False
        self._gate_lot = trio.lowlevel.ParkingLot()

    # -- the gate ----------------------------------------------------------------------------

    @property
    def publishing(self) -> bool:
        """Whether another node follows events (as of the last look, at most
        :data:`GATE_INTERVAL` seconds ago): only then are this node's events published."""
        return self._publishing

    async def gate(self) -> None:
        """Every :data:`GATE_INTERVAL` seconds (and at once when this node starts receiving):
        keep this node's entry in the set of listeners while it receives, and look whether
        another node is in it."""
        try:
            while True:
                try:
                    await self._look()
                except Exception as exc:
                    # The flag stays as it was; the next look may fare better.
                    self.node.link.task_failed("events gate", exc)
                with trio.move_on_after(GATE_INTERVAL):
                    await self._gate_lot.park()
        finally:
            if self._announced:
                with trio.CancelScope(shield=True), trio.move_on_after(FLUSH_TIMEOUT):
                    try:
                        await self.node.commands.zrem(self.listeners_key, self._origin)
                    except Exception as exc:
                        self.node.log.debug("events listener entry not removed", error=str(exc))

    async def _look(self) -> None:
        commands = self.node.commands
        key = self.listeners_key
        now = self.node.now()
        if self._listening:
            await commands.zadd(key, self._origin, now + LISTENER_TTL)
            await commands.pexpire(key, math.ceil(LISTENER_TTL * 1000))
            self._announced = True
        elif self._announced:
            await commands.zrem(key, self._origin)
            self._announced = False
        found = await commands.zrange_from(key, now, 2)
        publishing = any(str(member) != self._origin for member in found)
        if publishing != self._publishing:
            self._publishing = publishing
            self.hub.relay_changed()

    # -- sending -----------------------------------------------------------------------------

    def publish(self, event: JobEvent) -> None:
        """Queue ``event`` for the other nodes (never blocks; drops it when the buffer is full)."""
        outgoing = self._outgoing
        if len(outgoing) >= self.max_outgoing:
            self.lost += 1
            if not self._overflowing:
                self._overflowing = True
                self.node.log.warning(
                    "job events not sent to the other nodes: Redis is behind or away",
                    buffered=len(outgoing),
                )
            return
        outgoing.append(b"%s%s\n%s" % (self._prefix, event.kind.encode(), event.data))
        if len(outgoing) == 1:
            self._has_outgoing.unpark_all()

    async def send(self) -> None:
        """Publish the queued messages, a batch a round trip, until cancelled; then, briefly,
        what is left (the last jobs' ends at a shutdown)."""
        try:
            await self._send_forever()
        finally:
            if self._outgoing:
                with trio.CancelScope(shield=True), trio.move_on_after(FLUSH_TIMEOUT):
                    try:
                        await self._publish(list(self._outgoing))
                    except Exception as exc:
                        self.node.log.debug("job events not sent at stop", error=str(exc))

    async def _send_forever(self) -> None:
        outgoing = self._outgoing
        while True:
            while not outgoing:
                if self._overflowing:
                    self._overflowing = False
                    self.node.log.info("job events flow to the other nodes again", lost=self.lost)
                await self._has_outgoing.park()
            batch = [outgoing.popleft() for _ in range(min(len(outgoing), BATCH))]
            try:
                await self._publish(batch)
            except Exception as exc:
                # These messages are lost (best effort); the next ones are tried after a pause.
                await trio.sleep(self.node.link.task_failed("events", exc))

    async def _publish(self, batch: list[bytes]) -> None:
        self.published += len(batch)
        await self.node.commands.publish_many(self.channel, batch)

    # -- receiving ---------------------------------------------------------------------------

    def subscribers_changed(self, count: int) -> None:
        """The hub's subscriptions changed: subscribe when the first comes, and let the
        subscription go :data:`IDLE_UNSUBSCRIBE` seconds after the last left."""
        if count:
            self._wanted.set()
            if self._idle is not None:
                self._idle.deadline = float("inf")
        elif self._idle is not None:
            self._idle.deadline = trio.current_time() + IDLE_UNSUBSCRIBE

    async def ready(self) -> None:
        """Return once the subscription is confirmed (at most :data:`READY_TIMEOUT` seconds:
        with Redis away the stream starts anyway, and its look-ups keep it right)."""
        with trio.move_on_after(READY_TIMEOUT):
            await self._subscribed.wait()
        await trio.lowlevel.checkpoint()

    async def receive(self) -> None:
        """Subscribe while the hub has subscribers and hand it the other nodes' events."""
        while True:
            await self._wanted.wait()
            try:
                await self._listen()
            except BaseException as exc:
                cancelled = None if is_transient(exc) else cancelled_part(exc)
                if cancelled is not None:
                    raise cancelled from None
                if not isinstance(exc, Exception):
                    raise
                await trio.sleep(self.node.link.task_failed("events listener", exc))
            finally:
                self._subscribed = trio.Event()
                self._idle = None
                self._listening = False

    async def _listen(self) -> None:
        async with self.node.commands.subscribe([self.channel]) as messages:
            self._subscribed.set()
            # The other nodes start publishing once they see this node in the set.
            self._listening = True
            self._gate_lot.unpark_all()
            with trio.CancelScope() as self._idle:
                if not self.hub.subscribers:
                    self._idle.deadline = trio.current_time() + IDLE_UNSUBSCRIBE
                async for _, data in messages:
                    self.deliver(data)
            self._listening = False
            if not self.hub.subscribers:
                self._wanted = trio.Event()

    def deliver(self, message: str | bytes) -> None:
        """Hand one received message to the hub (this node's own and malformed ones skipped)."""
        event = decode(message, self._origin)
        if event is not None:
            self.hub.deliver(event)


def decode(message: str | bytes, own: str | None = None) -> JobEvent | None:
    """The :class:`JobEvent` of ``message``; ``None`` for one of node ``own`` or one that does
    not decode (another version's, say)."""
    try:
        raw = message.encode() if isinstance(message, str) else message
        origin, kind_bytes, data = raw.split(b"\n", 2)
        if origin.decode() == own:
            return None
        kind = kind_bytes.decode()
        value: Any = orjson.loads(data)
        if kind == STATE:
            return make_event(
                kind,
                str(value["id"]),
                str(value["type"]),
                str(value["priority"]),
                str(value["status"]),
                (len(value["errors"]), int(value["attempts"])),
                data,
            )
        return make_event(
            kind,
            str(value["job_id"]),
            str(value["type"]),
            str(value["priority"]),
            "running",
            (0, 0),
            data,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


async def relay_events(
    node: RedisNode, hub: EventHub, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the relay of ``hub`` over ``node``'s Redis until cancelled (the broker stops)."""
    relay = RedisEvents(node, hub)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(relay.send)
            nursery.start_soon(relay.receive)
            nursery.start_soon(relay.gate)
            hub.attach(relay)
            task_status.started()
    finally:
        hub.detach(relay)
