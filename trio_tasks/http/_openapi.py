"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /openapi.json``.

Built from the same constants the routes check (limits, bounds, priorities, statuses), so that it
cannot drift from them; ``tests/test_openapi.py`` runs schemathesis against a real server to keep
every answer true to it, errors included.
"""

from __future__ import annotations

import functools
from typing import Any

from .._config import Config, split_list
from .._job import JobStatus, Priority
from .._request import MAX_DELAY, MAX_NAME_LENGTH, MAX_RETRIES, MAX_TIMEOUT
from ._input import DEFAULT_LIST_LIMIT, MAX_BATCH, MAX_LIST_LIMIT, MAX_WAIT

_REF = "#/components/schemas/"
_JSON = "application/json"


def openapi_document(config: Config) -> dict[str, Any]:
    """The OpenAPI document of an API served with ``config`` (its security depends on the
    tokens; everything else is fixed)."""
    return _document(
        bool(split_list(config.api_token)), config.metrics_public, config.max_body_size
    )


@functools.cache
def _document(tokens: bool, metrics_public: bool, max_body_size: int) -> dict[str, Any]:
    paths = {
        "/": {"get": _op("index", "The endpoints and the job types this node knows", "Index")},
        "/health": {
            "get": _op(
                "health",
                "Health: 200 healthy; 503 while shutting down or when the broker is unreachable",
                "Health",
                extra={"503": _json("Health", "Unhealthy or shutting down")},
                open_=True,
            )
        },
        "/stats": {"get": _op("stats", "Statistics (the seed's fields and more)", "Stats")},
        "/workers": {"get": _op("workers", "The workers and what they run", "Workers")},
        "/metrics": {
            "get": _op(
                "metrics",
                "Prometheus metrics (text format)",
                None,
                open_=metrics_public,
            )
        },
        "/openapi.json": {"get": _op("openapi", "This document", None, json_any=True)},
        "/jobs": {
            "post": _op(
                "submitJob",
                "Submit a job: query parameters (the seed's form) and/or a JSON body",
                "Admitted",
                ok="202",
                extra={
                    "200": _json("Admitted", "The id existed: that job, no duplicate"),
                    "408": _error("The body did not arrive in time"),
                    "413": _error(f"Body larger than {max_body_size} bytes"),
                    "422": _error("Unknown job type (no fallback handler)"),
                },
                params=_submit_params(),
                body={"$ref": _REF + "JobRequest"},
                links=True,
            ),
            "get": _op(
                "listJobs",
                "Recent jobs, newest first",
                "JobList",
                params=[
                    _query("status", {"type": "string", "enum": [s.value for s in JobStatus]}),
                    _query("type", {"type": "string"}),
                    _query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_LIST_LIMIT,
                            "default": DEFAULT_LIST_LIMIT,
                        },
                    ),
                ],
            ),
        },
        "/jobs/batch": {
            "post": _op(
                "submitBatch",
                f"Submit up to {MAX_BATCH} jobs, all or none",
                "BatchAdmitted",
                ok="202",
                extra={
                    "200": _json("BatchAdmitted", "Every id existed"),
                    "408": _error("The body did not arrive in time"),
                    "413": _error(f"Body larger than {max_body_size} bytes"),
                    "422": _error("Unknown job type (no fallback handler)"),
                },
                body={
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH,
                    "items": {"$ref": _REF + "JobRequest"},
                },
                body_required=True,
            )
        },
        "/jobs/{id}": {
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": _name_schema()}
            ],
            "get": _op(
                "getJob",
                "One job's record; ?wait= long-polls until it is final",
                "Job",
                extra={"404": _error("No such job (or expired)")},
                params=[
                    _query(
                        "wait",
                        {
                            "description": f"a duration, at most {MAX_WAIT:g} seconds",
                            "oneOf": [
                                {"type": "number", "minimum": 0, "maximum": MAX_WAIT},
                                {"type": "string", "pattern": r"^\d{1,2}(ms|s)?$"},
                            ],
                        },
                    )
                ],
            ),
            "delete": _op(
                "cancelJob",
                "Cancel a job: 200 cancelled, 202 cancelling (it was running)",
                "Cancelled",
                extra={
                    "202": _json("Cancelled", "Running: it ends cancelled once unwound"),
                    "404": _error("No such job (or expired)"),
                    "409": _error("The job already finished"),
                },
            ),
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "trio-tasks",
            "version": "1",
            "description": "A task processing system on Trio. Every error is "
            '{"error": "<message>"}. See docs/api.md.',
        },
        "paths": paths,
        "components": {"schemas": _schemas(), "responses": {}},
    }
    if tokens:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "API_TOKEN"}
        }
        document["security"] = [{"bearer": []}]
    return document


def _op(
    operation_id: str,
    summary: str,
    schema: str | None,
    *,
    ok: str = "200",
    extra: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    body_required: bool = False,
    links: bool = False,
    open_: bool = False,
    json_any: bool = False,
) -> dict[str, Any]:
    if schema is not None:
        success = _json(schema, "Success")
    elif json_any:
        success = {"description": "Success", "content": {_JSON: {"schema": {"type": "object"}}}}
    else:
        success = {"description": "Success", "content": {"text/plain": {"schema": {}}}}
    responses: dict[str, Any] = {
        ok: success,
        "400": _error("Bad input, or a Host header ALLOWED_HOSTS does not list"),
        "401": _error("Missing or invalid API token (API_TOKEN)"),
        "403": _error("A read-only token on a write, or a cross-origin write"),
        "503": _error("Queue full, shutting down, or the broker is unreachable"),
        **(extra or {}),
    }
    if links:
        for status in ("202", "200"):
            responses[status]["links"] = {
                "GetJob": {"operationId": "getJob", "parameters": {"id": "$response.body#/job_id"}},
                "CancelJob": {
                    "operationId": "cancelJob",
                    "parameters": {"id": "$response.body#/job_id"},
                },
            }
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "responses": responses,
    }
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {
            "required": body_required,
            "content": {_JSON: {"schema": body}},
        }
    if open_:
        operation["security"] = []
    return operation


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": {"$ref": _REF + schema}}}}


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


_CONTROL = r"\u0000-\u001f\u007f-\u009f"
_ALLOWED = f"[^{_CONTROL}/]"


def _name_schema() -> dict[str, Any]:
    # Printable characters (no control characters) and no "/": what JobRequest accepts.
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_NAME_LENGTH,
        "pattern": f"^{_ALLOWED}*[^\\s{_CONTROL}/]{_ALLOWED}*$",
    }


def _priority_schema() -> dict[str, Any]:
    names = [str(p) for p in Priority]
    return {
        "oneOf": [
            {"type": "string", "enum": names + [str(int(p)) for p in Priority]},
            {"type": "integer", "minimum": 1, "maximum": 4},
        ]
    }


def _duration_schema(maximum: float) -> dict[str, Any]:
    return {
        "description": f"a Go duration (30s, 1h30m) or seconds, at most {maximum:g} seconds",
        "oneOf": [
            {"type": "number", "minimum": 0, "maximum": maximum},
            {"type": "string", "pattern": r"^\d{1,6}(\.\d{1,3})?(ms|s|m|h)?$"},
        ],
    }


def _submit_params() -> list[dict[str, Any]]:
    return [
        _query("type", {"type": "string", "maxLength": MAX_NAME_LENGTH}),
        _query("priority", {"type": "string", "enum": [str(p) for p in Priority]}),
        _query("timeout", {"type": "string"}),
        _query("retries", {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES}),
        _query("delay", {"type": "string"}),
        _query("run_at", {"type": "string"}),
        _query("job_id", _name_schema()),
    ]


def _schemas() -> dict[str, Any]:
    string, integer, number = {"type": "string"}, {"type": "integer"}, {"type": "number"}
    nullable_string = {"type": ["string", "null"]}
    percentiles = {"type": "object"}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": string},
        },
        "Index": {
            "type": "object",
            "required": ["name", "endpoints", "job_types"],
            "properties": {
                "name": string,
                "endpoints": {"type": "array", "items": string},
                "job_types": {"type": "array", "items": string},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "timestamp"],
            "properties": {
                "status": {"enum": ["healthy", "unhealthy", "shutting_down"]},
                "timestamp": string,
                "reason": string,
            },
        },
        "Stats": {
            "type": "object",
            "required": [
                "jobs_submitted",
                "jobs_completed",
                "jobs_failed",
                "workers_active",
                "queue_size",
                "uptime",
            ],
            "properties": {
                "jobs_submitted": integer,
                "jobs_completed": integer,
                "jobs_failed": integer,
                "workers_active": integer,
                "queue_size": integer,
                "uptime": string,
                "queue_wait_seconds": percentiles,
                "run_time_seconds": percentiles,
            },
        },
        "Workers": {
            "type": "object",
            "required": ["workers", "busy", "idle", "details"],
            "properties": {
                "workers": integer,
                "busy": integer,
                "idle": integer,
                "details": {"type": "array", "items": {"type": "object"}},
            },
        },
        "JobRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "type": {**_name_schema(), "default": "default"},
                "priority": _priority_schema(),
                "payload": {"type": "object", "description": "at most 100 levels deep"},
                "timeout": _duration_schema(MAX_TIMEOUT),
                "retries": {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES},
                "delay": _duration_schema(MAX_DELAY),
                "run_at": {
                    "description": "RFC 3339 or POSIX seconds, at most "
                    f"{MAX_DELAY:g} seconds from now (not with delay)",
                    "oneOf": [
                        {"type": "string", "format": "date-time"},
                        {"type": "number", "minimum": 0},
                    ],
                },
                "job_id": _name_schema(),
            },
        },
        "Admitted": {
            "type": "object",
            "required": ["job_id", "status", "type", "priority"],
            "properties": {
                "job_id": string,
                "status": {"enum": ["submitted", "exists"]},
                "type": string,
                "priority": {"enum": [str(p) for p in Priority]},
            },
        },
        "BatchAdmitted": {
            "type": "object",
            "required": ["jobs", "submitted", "existing"],
            "properties": {
                "jobs": {"type": "array", "items": {"$ref": _REF + "Admitted"}},
                "submitted": integer,
                "existing": integer,
            },
        },
        "Job": {
            "type": "object",
            "required": [
                "id",
                "type",
                "priority",
                "payload",
                "status",
                "attempts",
                "max_attempts",
                "timeout",
                "created_at",
            ],
            "properties": {
                "id": string,
                "type": string,
                "priority": {"enum": [str(p) for p in Priority]},
                "payload": {"type": "object"},
                "status": {"enum": [s.value for s in JobStatus]},
                "attempts": integer,
                "max_attempts": integer,
                "timeout": number,
                "created_at": string,
                "run_at": nullable_string,
                "started_at": nullable_string,
                "completed_at": nullable_string,
                "worker_id": nullable_string,
                "error": {
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "required": ["message", "type"],
                            "properties": {"message": string, "type": string},
                        },
                    ]
                },
            },
        },
        "JobList": {
            "type": "object",
            "required": ["jobs", "count", "truncated"],
            "properties": {
                "jobs": {"type": "array", "items": {"$ref": _REF + "Job"}},
                "count": integer,
                "truncated": {
                    "type": "boolean",
                    "description": "true when the page ended early, at 4 MiB of records",
                },
            },
        },
        "Cancelled": {
            "type": "object",
            "required": ["job_id", "status", "job"],
            "properties": {
                "job_id": string,
                "status": {"enum": ["cancelled", "cancelling"]},
                "job": {"$ref": _REF + "Job"},
            },
        },
    }
