"""The HTTP API of a processor: a Quart-Trio app whose routes follow SPEC §6.

The seed's endpoints (``/health``, ``/stats``, ``POST /jobs``, ``/workers``) answer the seed's
fields exactly, with extra fields beside them; the others (JSON bodies, batches, lookups,
listing, cancellation, ``/metrics``) are documented in ``docs/api.md``.

Handlers are kept lean: ``POST /jobs`` is the hot path, so everything that can be computed once
(the processor's methods, messages, header values) is bound when the app is created.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from .._config import Config
from .._durations import format_duration, parse_duration
from .._errors import InvalidValue, ShuttingDown
from .._job import Job, JobStatus, Priority, job_to_json
from .._processor import Processor
from .._request import JobRequest, json_kind
from .._stats import WorkerStats
from ._errors import json_response, register_error_handlers
from ._metrics import METRICS_CONTENT_TYPE, Metrics

#: Longest ``GET /jobs/{id}?wait=`` a client may ask for.
MAX_WAIT = 60.0
#: Default and largest ``limit`` of ``GET /jobs``.
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
#: Deepest nesting of a request body (the body itself is level 1). Deeper payloads used to be
#: admitted and then break every answer containing them (``GET /jobs`` answered 500), because
#: encoding a record nests a few levels deeper than decoding the body did.
MAX_JSON_DEPTH = 100

_SUBMIT_PARAMS = frozenset(
    {"type", "priority", "timeout", "retries", "delay", "run_at", "job_id"}
)  # payload only comes in a JSON body
_LIST_PARAMS = frozenset({"status", "type", "limit"})
_GET_PARAMS = frozenset({"wait"})
_PRIORITIES_HIGH_FIRST = tuple(sorted(Priority, reverse=True))
_RUNNING = JobStatus.RUNNING


class ApiState:
    """What the routes share beyond the processor: the long-polls in progress.

    :func:`trio_tasks.serve` calls :meth:`stop_waiting` when the server stops, so a client
    waiting on a job that will never finish gets the job as it is instead of a hung request.
    """

    def __init__(self, processor: Processor, config: Config) -> None:
        self.processor = processor
        self.config = config
        self.metrics = Metrics(processor)
        self._waits: set[trio.CancelScope] = set()
        self._stopped = False

    @contextmanager
    def waiting(self, seconds: float) -> Iterator[trio.CancelScope]:
        """A cancel scope of ``seconds`` that :meth:`stop_waiting` also cancels."""
        with trio.move_on_after(seconds) as scope:
            if self._stopped:
                scope.cancel()
            self._waits.add(scope)
            try:
                yield scope
            finally:
                self._waits.discard(scope)

    def stop_waiting(self) -> None:
        """End every wait in progress, and every later one at once."""
        self._stopped = True
        for scope in self._waits:
            scope.cancel()


def create_app(processor: Processor, config: Config | None = None) -> QuartTrio:
    """Return the Quart-Trio app serving the HTTP API of ``processor``.

    ``config`` (default: the processor's) gives the request body size limit. The app's
    :class:`ApiState` is ``app.extensions["trio_tasks"]``. Serve it with
    :func:`trio_tasks.serve`, or use ``app.test_client()`` in tests.
    """
    config = config or processor.config
    state = ApiState(processor, config)
    app = QuartTrio(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_size
    app.extensions["trio_tasks"] = state
    register_error_handlers(app, config.max_body_size)

    # Bound once: the handlers below run for every request.
    submit_many = processor.submit_many
    get_job = processor.get
    wait_job = processor.wait
    broker = processor.broker
    shutting_down_reason = (
        "shutdown requested: no new jobs are accepted; running jobs get "
        f"{format_duration(processor.config.shutdown_timeout)} to finish"
    )

    @app.get("/")
    async def index() -> Response:
        return json_response(
            {
                "name": "trio-tasks",
                "endpoints": [
                    "GET /health",
                    "GET /stats",
                    "GET /workers",
                    "GET /metrics",
                    "POST /jobs",
                    "POST /jobs/batch",
                    "GET /jobs",
                    "GET /jobs/{id}",
                    "DELETE /jobs/{id}",
                ],
                "job_types": processor.registry.names(),
            }
        )

    @app.get("/health")
    async def health() -> Response:
        now = _timestamp()
        if processor.closing:
            body = {"status": "shutting_down", "timestamp": now, "reason": shutting_down_reason}
            return json_response(body, 503)
        reason = broker.health()
        if reason is not None:
            return json_response({"status": "unhealthy", "timestamp": now, "reason": reason}, 503)
        return json_response({"status": "healthy", "timestamp": now})

    @app.get("/stats")
    async def stats() -> Response:
        s = await processor.stats()
        workers = s.workers
        return json_response(
            {
                # The seed's fields, exactly.
                "jobs_submitted": s.submitted,
                "jobs_completed": s.completed,
                "jobs_failed": s.failed,
                "workers_active": sum(1 for w in workers if w.state != "stopped"),
                "queue_size": s.queue_size,
                "uptime": format_duration(float(round(s.uptime))),
                # Beyond the seed.
                "jobs_running": s.running,
                "jobs_retried": s.retried,
                "jobs_cancelled": s.cancelled,
                "jobs_scheduled": s.scheduled,
                "workers": len(workers),
                "workers_busy": s.workers_busy,
                "queue_sizes": {str(p): s.queued.get(p, 0) for p in _PRIORITIES_HIGH_FIRST},
                "queue_wait_seconds": s.queue_wait.to_json(),
                "run_time_seconds": s.run_time.to_json(),
                "uptime_seconds": round(s.uptime, 3),
                "shutting_down": processor.closing,
            }
        )

    @app.get("/workers")
    async def workers() -> Response:
        snapshot = processor.workers()
        busy = sum(1 for w in snapshot if w.state == "busy")
        return json_response(
            {
                "workers": len(snapshot),
                "busy": busy,
                "idle": sum(1 for w in snapshot if w.state == "idle"),
                "details": [_worker_json(w) for w in snapshot],
            }
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(await state.metrics.render(), 200, content_type=METRICS_CONTENT_TYPE)

    @app.post("/jobs")
    async def submit() -> Response:
        args = request.args
        # Most submissions have no body: when the client says so, skip reading one (a cancel
        # scope and a checkpoint). Without the header a body may still come (HTTP/2, chunked).
        if request.content_length == 0:
            body = b""
        else:
            body = await request.get_data(False, False, False)
        if body:
            data = _parse_json(body)
            if not isinstance(data, dict):
                raise InvalidValue(
                    f"the body of POST /jobs must be a JSON object, got {_kind(data)}; "
                    "use POST /jobs/batch for a list"
                )
            if args:
                # Body fields win over query parameters of the same name.
                data = {**_params(args, _SUBMIT_PARAMS), **data}
            job_request = JobRequest.from_json(data)
        elif args:
            job_request = JobRequest.build(**_params(args, _SUBMIT_PARAMS))
        else:
            job_request = JobRequest()
        (admission,) = await submit_many([job_request])
        job = admission.job
        return json_response(
            _admitted(job, admission.created),
            202 if admission.created else 200,
        )

    @app.post("/jobs/batch")
    async def submit_batch() -> Response:
        if request.args:
            raise InvalidValue("POST /jobs/batch takes no query parameters; put fields in the body")
        data = _parse_json(await request.get_data(False, False, False))
        if not isinstance(data, list) or not data:
            raise InvalidValue(
                f"the body of POST /jobs/batch must be a non-empty JSON array of job objects, "
                f"got {_kind(data)}"
            )
        requests: list[JobRequest] = []
        for index, item in enumerate(data):
            try:
                requests.append(JobRequest.from_json(item))
            except InvalidValue as exc:
                raise InvalidValue(f"jobs[{index}]: {exc}") from None
        admissions = await submit_many(requests)
        created = sum(1 for a in admissions if a.created)
        return json_response(
            {
                "jobs": [_admitted(a.job, a.created) for a in admissions],
                "submitted": created,
                "existing": len(admissions) - created,
            },
            202 if created else 200,
        )

    @app.get("/jobs")
    async def list_jobs() -> Response:
        params = _params(request.args, _LIST_PARAMS)
        jobs = await processor.list_jobs(
            status=params.get("status"), type=params.get("type"), limit=_limit(params.get("limit"))
        )
        return json_response({"jobs": [job_to_json(j) for j in jobs], "count": len(jobs)})

    @app.get("/jobs/<job_id>")
    async def get(job_id: str) -> Response:
        wait = _wait(_params(request.args, _GET_PARAMS).get("wait")) if request.args else None
        job = await get_job(job_id)
        if wait and not job.status.is_final:
            try:
                with state.waiting(wait) as scope:
                    job = await wait_job(job_id)
            except ShuttingDown:
                # The processor stopped: the job will not finish here; answer it as it is.
                job = await get_job(job_id)
            else:
                if scope.cancelled_caught:
                    job = await get_job(job_id)
        return json_response(job_to_json(job))

    @app.delete("/jobs/<job_id>")
    async def cancel(job_id: str) -> Response:
        job = await processor.cancel(job_id)
        if job.status is _RUNNING:
            # The worker is unwinding the handler; the job ends "cancelled" in a moment.
            return json_response(
                {"job_id": job.id, "status": "cancelling", "job": job_to_json(job)}, 202
            )
        return json_response({"job_id": job.id, "status": "cancelled", "job": job_to_json(job)})

    return app


def _admitted(job: Job, created: bool) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "status": "submitted" if created else "exists",
        "type": job.type,
        "priority": str(job.priority),
    }


def _worker_json(worker: WorkerStats) -> dict[str, Any]:
    return {
        "id": worker.id,
        "state": worker.state,
        "current_job": worker.current_job,
        "processed": worker.processed,
        "succeeded": worker.succeeded,
        "failed": worker.failed,
    }


def _timestamp() -> str:
    # RFC 3339 in UTC at second precision, as the seed answers.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _params(args: Mapping[str, str], known: frozenset[str]) -> dict[str, str]:
    unknown = [name for name in args if name not in known]
    if unknown:
        raise InvalidValue(
            f"unknown query parameter(s) {', '.join(sorted(unknown))}; "
            f"expected {', '.join(sorted(known))}"
        )
    # An empty value means "not given", as in the seed (``?type=`` submits a "default" job).
    return {name: value for name, value in args.items() if value != ""}


def _wait(raw: str | None) -> float | None:
    if raw is None:
        return None
    seconds = parse_duration(raw, name="wait")
    if seconds > MAX_WAIT:
        raise InvalidValue(f"wait: expected at most {format_duration(MAX_WAIT)}, got {raw!r}")
    return seconds


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIST_LIMIT
    text = raw.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIST_LIMIT:
        raise InvalidValue(f"limit: expected an integer from 1 to {MAX_LIST_LIMIT}, got {raw!r}")
    return int(text)


def _reject_constant(name: str) -> Any:
    raise InvalidValue(f"malformed JSON: {name} is not valid JSON")


def _parse_json(body: bytes) -> Any:
    if not body:
        raise InvalidValue("malformed JSON: the body is empty")
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidValue(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except UnicodeDecodeError:
        raise InvalidValue("malformed JSON: the body is not UTF-8 text") from None
    except RecursionError:
        raise InvalidValue(_TOO_DEEP) from None
    # Each level takes two bytes ("[]"): a short body cannot be too deep, and most are short.
    if len(body) > 2 * MAX_JSON_DEPTH and _too_deep(data):
        raise InvalidValue(_TOO_DEEP)
    return data


_TOO_DEEP = f"malformed JSON: nested too deeply (at most {MAX_JSON_DEPTH} levels)"


def _too_deep(data: Any) -> bool:
    # Iterative: the point is to refuse what recursion could not handle later.
    stack: list[tuple[Any, int]] = [(data, 1)] if isinstance(data, dict | list) else []
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _kind(value: object) -> str:
    return json_kind(value, with_value=False)
