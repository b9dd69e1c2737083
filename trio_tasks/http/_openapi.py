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
from .._request import MAX_NAME_LENGTH, MAX_RETRIES
from ._input import DEFAULT_LIST_LIMIT, MAX_BATCH, MAX_LIST_LIMIT, MAX_WAIT
from ._openapi_dead_letter import retry_paths, retry_schemas
from ._openapi_events import event_paths
from ._openapi_schedules import schedule_paths, schedule_schemas
from ._openapi_schemas import REF as _REF
from ._openapi_schemas import name_schema as _name_schema
from ._openapi_schemas import schemas
from ._openapi_ui import ui_paths, ui_schemas

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
    paths.update(schedule_paths(_op, _error))
    paths.update(retry_paths(_op, _error))
    paths.update(event_paths(_op, _error))
    paths.update(ui_paths(_op, _error))
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "trio-tasks",
            "version": "1",
            "description": "A task processing system on Trio. Every error is "
            '{"error": "<message>"}. See docs/api.md.',
        },
        "paths": paths,
        "components": {
            "schemas": {**schemas(), **schedule_schemas(), **retry_schemas(), **ui_schemas()},
            "responses": {},
        },
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
                "RetryJob": {
                    "operationId": "retryJob",
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
