"""The failed-jobs part of the OpenAPI document: ``POST /jobs/{id}/retry`` and
``POST /jobs/retry`` (the dead-letter list)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._dead_letter import RETRY_MAX
from ._openapi_schemas import REF, name_schema


def retry_paths(
    op: Callable[..., dict[str, Any]], error: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    """The path items, built with the document's operation and error helpers."""
    query = {"in": "query", "required": False}
    return {
        "/jobs/{id}/retry": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": name_schema()}],
            "post": op(
                "retryJob",
                "Queue a failed or cancelled job again under its id, with fresh attempts; its "
                "last error is kept in errors",
                "Requeued",
                extra={
                    "404": error("No such job (or expired)"),
                    "409": error("The job is not failed or cancelled"),
                },
            ),
        },
        "/jobs/retry": {
            "post": op(
                "retryFailedJobs",
                f"Queue again the failed jobs matching the filters, newest first, at most "
                f"{RETRY_MAX} per call (more: call again)",
                "RequeuedBatch",
                params=[
                    {**query, "name": "type", "schema": {"type": "string"}},
                    {
                        **query,
                        "name": "since",
                        "description": "failed since: an RFC 3339 time, or a duration (1h30m) ago",
                        "schema": {"type": "string"},
                    },
                ],
            ),
        },
    }


def retry_schemas() -> dict[str, Any]:
    """The schemas those paths refer to."""
    string, integer = {"type": "string"}, {"type": "integer", "minimum": 0}
    return {
        "Requeued": {
            "type": "object",
            "required": ["job_id", "status", "job"],
            "properties": {
                "job_id": string,
                "status": {"enum": ["requeued"]},
                "job": {"$ref": REF + "Job"},
            },
        },
        "RequeuedBatch": {
            "type": "object",
            "required": ["requeued", "job_ids", "more", "limit"],
            "properties": {
                "requeued": integer,
                "job_ids": {"type": "array", "items": string},
                "more": {"type": "boolean"},
                "limit": integer,
            },
        },
    }
