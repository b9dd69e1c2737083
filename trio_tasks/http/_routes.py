"""The routes of the HTTP API (SPEC §6), as a blueprint.

Every route reaches the processor through the app: ``current_app.extensions["trio_tasks"]`` is
the :class:`~trio_tasks.http.ApiState` that :func:`~trio_tasks.http.create_app` put there.
``POST /jobs`` is the hot path: one lookup of that state, the processor's methods already
bound on it, and no await beyond reading the body (only when there is one) and the submission.
"""

from __future__ import annotations

import time
from typing import Any

import trio
from quart import Blueprint, Response, current_app, request

from .._dead_letter import RETRY_MAX, parse_since
from .._errors import InvalidValue, JobNotFound, ShuttingDown
from .._job import Job, JobStatus, job_to_json
from .._request import JobRequest, valid_name
from .._schedule_loop import schedule_views
from ._errors import encode_json, error_response, json_response
from ._figures import stats_json, workers_json
from ._input import (
    GET_PARAMS,
    LIST_PARAMS,
    MAX_BATCH,
    RETRY_PARAMS,
    SUBMIT_PARAMS,
    kind,
    list_limit,
    params,
    read_json,
    wait_seconds,
)
from ._metrics import METRICS_CONTENT_TYPE
from ._openapi import openapi_document
from ._state import ApiState

routes = Blueprint("trio_tasks", __name__)

ENDPOINTS = (
    "GET /health",
    "GET /stats",
    "GET /workers",
    "GET /metrics",
    "POST /jobs",
    "POST /jobs/batch",
    "GET /jobs",
    "GET /jobs/{id}",
    "GET /jobs/{id}/events",
    "GET /events",
    "DELETE /jobs/{id}",
    "POST /jobs/{id}/retry",
    "POST /jobs/retry",
    "GET /schedules",
    "POST /schedules/{name}/pause",
    "POST /schedules/{name}/resume",
    "GET /openapi.json",
    "GET /stats/history",
    "GET /ui",
    "GET /ui/{name}",
)
#: Most bytes of job records in one ``GET /jobs`` answer: past it the page ends early
#: (``"truncated": true``), so that no listing can take a node's memory or time.
MAX_PAGE_BYTES = 4 * 1_048_576

_RUNNING = JobStatus.RUNNING


def _state() -> ApiState:
    state: ApiState = current_app.extensions["trio_tasks"]
    return state


@routes.get("/")
async def index() -> Response:
    registry = _state().processor.registry
    return json_response(
        {"name": "trio-tasks", "endpoints": list(ENDPOINTS), "job_types": registry.names()}
    )


@routes.get("/health")
async def health() -> Response:
    state = _state()
    now = _timestamp()
    if state.processor.closing:
        body = {"status": "shutting_down", "timestamp": now, "reason": state.shutting_down_reason}
        return json_response(body, 503)
    reason = state.processor.broker.health()
    if reason is not None:
        return json_response({"status": "unhealthy", "timestamp": now, "reason": reason}, 503)
    return json_response({"status": "healthy", "timestamp": now})


@routes.get("/stats")
async def stats() -> Response:
    processor = _state().processor
    return json_response(stats_json(await processor.stats(), processor.closing))


@routes.get("/workers")
async def workers() -> Response:
    state = _state()
    cluster = await state.cluster() if state.node_id is not None else None
    return json_response(workers_json(state.processor.workers(), state.node_id, cluster))


@routes.get("/metrics")
async def metrics() -> Response:
    text = await _state().metrics.render()
    return Response(text, 200, content_type=METRICS_CONTENT_TYPE)


@routes.get("/openapi.json")
async def openapi() -> Response:
    return json_response(openapi_document(_state().config))


@routes.post("/jobs")
async def submit() -> Response:
    state = _state()
    args = request.args
    # Most submissions have no body: when the client says so, skip reading one (a cancel
    # scope and a checkpoint). Without the header a body may still come (HTTP/2, chunked).
    if request.content_length == 0:
        body = b""
    else:
        body = await request.get_data(False, False, False)
    if body:
        data = await read_json(body, state.json_limiter)
        if not isinstance(data, dict):
            raise InvalidValue(
                f"the body of POST /jobs must be a JSON object, got {kind(data)}; "
                "use POST /jobs/batch for a list"
            )
        if args:
            # Body fields win over query parameters of the same name.
            data = {**params(args, SUBMIT_PARAMS, state.ignored_params), **data}
        job_request = JobRequest.from_json(data)
    elif args:
        job_request = JobRequest.build(**params(args, SUBMIT_PARAMS, state.ignored_params))
    else:
        job_request = JobRequest()
    (admission,) = await state.submit_many([job_request])
    return json_response(
        _admitted(admission.job, admission.created), 202 if admission.created else 200
    )


@routes.post("/jobs/batch")
async def submit_batch() -> Response:
    state = _state()
    if request.args:
        state.ignored_params(list(request.args))
    data = await read_json(await request.get_data(False, False, False), state.json_limiter)
    if not isinstance(data, list) or not data:
        raise InvalidValue(
            f"the body of POST /jobs/batch must be a non-empty JSON array of job objects, "
            f"got {kind(data)}"
        )
    if len(data) > MAX_BATCH:
        raise InvalidValue(f"a batch holds at most {MAX_BATCH} jobs, got {len(data)}")
    requests: list[JobRequest] = []
    for index, item in enumerate(data):
        try:
            requests.append(JobRequest.from_json(item))
        except InvalidValue as exc:
            raise InvalidValue(f"jobs[{index}]: {exc}") from None
    admissions = await state.submit_many(requests)
    created = sum(1 for a in admissions if a.created)
    return json_response(
        {
            "jobs": [_admitted(a.job, a.created) for a in admissions],
            "submitted": created,
            "existing": len(admissions) - created,
        },
        202 if created else 200,
    )


@routes.get("/jobs")
async def list_jobs() -> Response:
    state = _state()
    given = params(request.args, LIST_PARAMS, state.ignored_params)
    limit = list_limit(given.get("limit"))
    status = given.get("status")
    job_status = None if status is None else JobStatus.parse(status)
    job_type = given.get("type")
    if job_type is not None and not valid_name(job_type):
        # No job has such a type (see JobRequest): nothing to look up.
        await trio.lowlevel.checkpoint()
        jobs: list[Job] = []
    else:
        jobs = await state.processor.list_jobs(status=job_status, type=job_type, limit=limit)
    # Each record is encoded once, and the page ends before MAX_PAGE_BYTES.
    records: list[str] = []
    size = 0
    for job in jobs:
        record = encode_json(job_to_json(job))
        size += len(record) + 1
        if size > MAX_PAGE_BYTES and records:
            break
        records.append(record)
    truncated = "true" if len(records) < len(jobs) else "false"
    body = f'{{"jobs":[{",".join(records)}],"count":{len(records)},"truncated":{truncated}}}\n'
    return Response(body, 200, content_type="application/json")


@routes.get("/jobs/<job_id>")
async def get(job_id: str) -> Response:
    state = _state()
    wait = None
    if request.args:
        wait = wait_seconds(params(request.args, GET_PARAMS, state.ignored_params).get("wait"))
    job = await state.get_job(job_id)
    if wait and not job.status.is_final:
        try:
            with state.waiting(wait) as scope:
                job = await state.wait_job(job_id)
        except ShuttingDown:
            # The processor stopped: the job will not finish here; answer it as it is.
            job = await state.get_job(job_id)
        else:
            if scope.cancelled_caught:
                job = await state.get_job(job_id)
    return json_response(job_to_json(job))


@routes.delete("/jobs/<job_id>")
async def cancel(job_id: str) -> Response:
    job = await _state().cancel_job(job_id)
    if job.status is _RUNNING:
        # The worker is unwinding the handler; the job ends "cancelled" in a moment.
        return json_response(
            {"job_id": job.id, "status": "cancelling", "job": job_to_json(job)}, 202
        )
    return json_response({"job_id": job.id, "status": "cancelled", "job": job_to_json(job)})


# -- failed jobs (the dead-letter list) --------------------------------------------------------


@routes.post("/jobs/<job_id>/retry")
async def retry(job_id: str) -> Response:
    processor = _state().processor
    if not valid_name(job_id):
        await trio.lowlevel.checkpoint()
        raise JobNotFound(job_id[:200])
    job = await processor.retry(job_id)
    return json_response({"job_id": job.id, "status": "requeued", "job": job_to_json(job)})


@routes.post("/jobs/retry")
async def retry_failed() -> Response:
    state = _state()
    given = params(request.args, RETRY_PARAMS, state.ignored_params)
    job_type = given.get("type")
    if job_type is not None and not valid_name(job_type):
        # No job has such a type (see JobRequest): nothing to queue again.
        parse_since(given.get("since"), 0.0)
        await trio.lowlevel.checkpoint()
        jobs: tuple[Job, ...] = ()
        more = False
    else:
        batch = await state.processor.retry_failed(type=job_type, since=given.get("since"))
        jobs, more = batch.jobs, batch.more
    answer = {"requeued": len(jobs), "job_ids": [job.id for job in jobs], "more": more}
    return json_response({**answer, "limit": RETRY_MAX})


def _admitted(job: Job, created: bool) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "status": "submitted" if created else "exists",
        "type": job.type,
        "priority": str(job.priority),
    }


def _timestamp() -> str:
    # RFC 3339 in UTC at second precision, as the seed answers.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- periodic jobs -----------------------------------------------------------------------------


@routes.get("/schedules")
async def list_schedules() -> Response:
    views = await _schedule_views()
    return json_response({"schedules": [view.to_json() for view in views]})


@routes.post("/schedules/<name>/pause")
async def pause_schedule(name: str) -> Response:
    return await _set_paused(name, True)


@routes.post("/schedules/<name>/resume")
async def resume_schedule(name: str) -> Response:
    return await _set_paused(name, False)


async def _schedule_views(name: str | None = None) -> list[Any]:
    processor = _state().processor
    registry = processor.registry
    now = processor.clock.now() if processor.clock is not None else time.time()
    return await schedule_views(registry, processor.broker, now, name)


async def _set_paused(name: str, paused: bool) -> Response:
    processor = _state().processor
    if name not in processor.registry.schedules:
        # Quoted with repr: a name from the URL may hold anything.
        return error_response(404, f"schedule {name!r} not found")
    await processor.broker.set_schedule_paused(name, paused)
    (view,) = await _schedule_views(name)
    return json_response(view.to_json())
