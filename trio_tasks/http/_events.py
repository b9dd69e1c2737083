"""The event streams (Server-Sent Events): ``GET /jobs/{id}/events`` and ``GET /events``.

The format is the contract of ``docs/api.md`` (*Live events*): ``event: <name>`` and one
``data:`` line of JSON per event, a ``: keep-alive`` comment after :data:`KEEP_ALIVE` seconds
without traffic. Events come from the processor's :class:`~trio_tasks._events.EventHub`; each
stream reads its own bounded :class:`~trio_tasks._events.Subscription`, so a slow client is
dropped and never slows the workers. ``GET /events`` sends the events of each tick (50 ms,
longer with many readers: :meth:`~trio_tasks._events.EventHub.tick_length`) as one chunk that
every stream with the same filters shares, compressed once for all of them when the client
takes ``deflate`` (:mod:`._deflate`); ``GET /jobs/{id}/events`` sends each event of its job at
once. Every wait of a stream
ends when the server stops (:meth:`ApiState.stop_waiting`) or the processor stops (the hub
closes), and the stream then ends cleanly.

A dropped client that does not read at all would leave its response stuck in a ``send``:
:func:`streams` (ASGI middleware) gives each stream a cancel scope that a drop cancels after
:data:`DROP_GRACE` seconds, time enough to tell a client that still reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import attrs
import trio
from quart import Blueprint, Response, current_app, request

from .._errors import BrokerUnavailable, InvalidValue, JobNotFound
from .._event_json import dumps
from .._events import STATE, JobEvent, Subscription, state_event
from .._job import Job, JobStatus, Priority
from .._request import valid_name
from ._deflate import DeflateWriter, SharedPacker, accepts_deflate, pack
from ._input import params
from ._openapi_events import DETAILS
from ._state import ApiState

_T = TypeVar("_T")
_NO_EVENTS: list[JobEvent] = []

events = Blueprint("trio_tasks_events", __name__)

#: Seconds without traffic after which a stream sends ``: keep-alive`` (proxies close silent
#: connections).
KEEP_ALIVE = 15.0
#: Seconds without events after which a job's stream looks the job up again: an event lost on
#: its way between nodes (pub/sub is best effort) delays the stream, never hangs it.
RECHECK = 5.0
#: Seconds a dropped stream gets to tell its client so before its response is cut.
DROP_GRACE = 1.0
#: The query parameters of ``GET /events``.
EVENTS_PARAMS = frozenset({"type", "status", "priority", "detail"})
#: Where :class:`StreamSettings` live in ``app.extensions``.
SETTINGS_KEY = "trio_tasks.events"
#: The ASGI scope key of a stream's cancel scope (see :func:`streams`).
_SCOPE_KEY = "trio_tasks.stream_scope"

CONTENT_TYPE = "text/event-stream; charset=utf-8"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: ``GET /events`` answers depend on ``Accept-Encoding``.
PLAIN_HEADERS = {**HEADERS, "Vary": "Accept-Encoding"}
DEFLATE_HEADERS = {**PLAIN_HEADERS, "Content-Encoding": "deflate"}
KEEP_ALIVE_FRAME = b": keep-alive\n\n"
DROPPED_FRAME = b'event: dropped\ndata: {"reason":"client too slow"}\n\n'
_KEEP_ALIVE_PACKED = pack(KEEP_ALIVE_FRAME)


@attrs.define
class StreamSettings:
    """The timing of the streams of one app (tests shorten them), and the packer that
    compresses each tick's text once for all the app's compressed streams."""

    keep_alive: float = KEEP_ALIVE
    recheck: float = RECHECK
    packer: SharedPacker = attrs.field(factory=SharedPacker)


def frame(name: str, data: bytes) -> bytes:
    """One event in the text/event-stream format (``data`` is one line of JSON)."""
    return b"event: %s\ndata: %s\n\n" % (name.encode(), data)


def _end_frame(event: JobEvent) -> bytes:
    return frame("end", dumps({"job_id": event.job_id, "status": event.status}))


def _state() -> ApiState:
    state: ApiState = current_app.extensions["trio_tasks"]
    return state


def _settings() -> StreamSettings:
    settings: StreamSettings | None = current_app.extensions.get(SETTINGS_KEY)
    if settings is None:
        settings = current_app.extensions[SETTINGS_KEY] = StreamSettings()
    return settings


@events.get("/jobs/<job_id>/events")
async def job_events(job_id: str) -> Response:
    state = _state()
    if request.args:
        state.ignored_params(list(request.args))
    if not valid_name(job_id):
        await trio.lowlevel.checkpoint()
        raise JobNotFound(job_id[:200])
    hub = state.processor.events
    # Subscribed before the lookup: no event between the two is missed (older ones are
    # skipped by their order, see _JobStream).
    subscription = hub.subscribe(job_id=job_id)
    try:
        await hub.ready()
        job = await state.get_job(job_id)
    except BaseException:
        subscription.close()
        raise
    return _respond(_JobStream(state, _settings(), subscription, job).frames(), subscription)


@events.get("/events")
async def all_events() -> Response:
    state = _state()
    given = params(request.args, EVENTS_PARAMS, state.ignored_params)
    status = given.get("status")
    priority = given.get("priority")
    # summary (the default: per tick, the newest state of each job that changed, as a
    # summary) or full (every event, states as whole records).
    detail = given.get("detail", DETAILS[0]).strip().lower()
    if detail not in DETAILS:
        raise InvalidValue(f"invalid detail {detail[:50]!r}; expected one of {', '.join(DETAILS)}")
    subscription = state.processor.events.subscribe(
        job_type=given.get("type"),
        status=None if status is None else JobStatus.parse(status).value,
        priority=None if priority is None else str(Priority.parse(priority)),
        full=detail == "full",
    )
    await trio.lowlevel.checkpoint()
    # Compressed when the client takes it (browsers do): see _deflate.
    deflate = accepts_deflate(request.headers.get("Accept-Encoding", ""))
    body = _all_frames(state, _settings(), subscription, deflate)
    return _respond(body, subscription, DEFLATE_HEADERS if deflate else PLAIN_HEADERS)


def _respond(
    body: AsyncIterator[bytes], subscription: Subscription, headers: dict[str, str] = HEADERS
) -> Response:
    scope: Any = request.scope.get(_SCOPE_KEY)
    if scope is not None:
        subscription.on_drop = _cut_after_grace(scope)
    response = Response(body, 200, headers, content_type=CONTENT_TYPE)
    response.timeout = None  # a stream has no time limit
    return response


def _cut_after_grace(scope: trio.CancelScope) -> Any:
    def cut() -> None:
        scope.deadline = min(scope.deadline, trio.current_time() + DROP_GRACE)

    return cut


class _Stopped(Exception):
    """The server is stopping: the stream ends."""


async def _wait(
    state: ApiState, receive: Callable[[], Awaitable[_T]], seconds: float, nothing: _T
) -> _T:
    """What ``receive()`` (a subscription's ``next_batch`` or ``next_chunk``) brings next,
    ``nothing`` after ``seconds`` without any.

    Raises:
        _Stopped: the server stops, or the subscription ended (dropped, or the node stopped).
    """
    with state.waiting(max(seconds, 0.0)) as scope:
        received = await receive()
        if not received:
            raise _Stopped()
        return received
    if trio.current_time() < scope.deadline:
        raise _Stopped()  # cancelled before its time: stop_waiting()
    return nothing


async def _all_frames(
    state: ApiState, settings: StreamSettings, subscription: Subscription, deflate: bool
) -> AsyncIterator[bytes]:
    writer = DeflateWriter() if deflate else None
    try:
        hello = frame("hello", dumps({"node": state.node_id}))
        yield hello if writer is None else writer.write(pack(hello))
        packer = settings.packer
        while True:
            try:
                chunk = await _wait(state, subscription.next_chunk, settings.keep_alive, b"")
            except _Stopped:
                break
            # One text per tick, the same object for every reader with these filters (and
            # compressed once for all of them).
            if writer is None:
                yield chunk or KEEP_ALIVE_FRAME
            else:
                yield writer.write(packer.pack(chunk) if chunk else _KEEP_ALIVE_PACKED)
        if subscription.dropped:
            yield DROPPED_FRAME if writer is None else writer.write(pack(DROPPED_FRAME))
        if writer is not None:
            yield writer.end()
    finally:
        subscription.close()


class _JobStream:
    """The frames of one job's stream: its state at once, then its events, then ``end``."""

    def __init__(
        self, state: ApiState, settings: StreamSettings, subscription: Subscription, job: Job
    ) -> None:
        self.state = state
        self.settings = settings
        self.subscription = subscription
        self.job_id = job.id
        self.last = state_event(job)

    async def frames(self) -> AsyncIterator[bytes]:
        subscription = self.subscription
        last = self.last
        try:
            yield frame(STATE, last.data)
            if last.final:
                yield _end_frame(last)
                return
            settings = self.settings
            sent_at = looked_at = trio.current_time()
            while True:
                due = min(looked_at + settings.recheck, sent_at + settings.keep_alive)
                try:
                    batch = await _wait(
                        self.state, subscription.next_batch, due - trio.current_time(), _NO_EVENTS
                    )
                except _Stopped:
                    break
                now = trio.current_time()
                if not batch and now >= looked_at + settings.recheck:
                    looked_at = now
                    found = await self._look_up()
                    if found is None:
                        break  # the job is gone (retention): nothing more will come
                    batch = found
                text, final = self._render(batch)
                if text:
                    sent_at = now
                    yield text
                    if final:
                        return
                elif now >= sent_at + settings.keep_alive:
                    sent_at = now
                    yield KEEP_ALIVE_FRAME
            if subscription.dropped:
                yield DROPPED_FRAME
        finally:
            subscription.close()

    async def _look_up(self) -> list[JobEvent] | None:
        try:
            job = await self.state.get_job(self.job_id)
        except JobNotFound:
            return None
        except BrokerUnavailable:
            return []
        return [state_event(job)]

    def _render(self, batch: list[JobEvent]) -> tuple[bytes, bool]:
        """The frames of ``batch`` (states older than the last one sent skipped) and whether
        the job ended."""
        parts: list[bytes] = []
        for event in batch:
            if event.kind == STATE:
                last = self.last
                if event.order < last.order or (
                    event.order == last.order and event.data == last.data
                ):
                    continue
                self.last = event
                parts.append(event.text)
                if event.final:
                    parts.append(_end_frame(event))
                    return b"".join(parts), True
            else:
                parts.append(event.text)
        return b"".join(parts), False


def streams(app: Any) -> Any:
    """``app`` (ASGI) with a cancel scope around each event stream's request, which a drop
    cancels (see the module docstring)."""

    async def with_scope(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/events"):
            await app(scope, receive, send)
            return
        with trio.CancelScope() as cancel:
            scope[_SCOPE_KEY] = cancel
            await app(scope, receive, send)

    return with_scope
