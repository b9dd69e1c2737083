"""The event streams' part of the OpenAPI document: ``GET /jobs/{id}/events`` and
``GET /events`` (Server-Sent Events; the format is described in ``docs/api.md``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._job import JobStatus, Priority
from ._openapi_schemas import name_schema

#: The values of ``GET /events?detail=`` (the default first); see :mod:`._events`.
DETAILS = ("summary", "full")

_STREAM = "text/event-stream"


def event_paths(
    op: Callable[..., dict[str, Any]], error: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    """The path items, built with the document's operation and error helpers."""
    query = {"in": "query", "required": False}
    return {
        "/jobs/{id}/events": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": name_schema()}],
            "get": _streaming(
                op(
                    "followJob",
                    "A stream of one job's events (Server-Sent Events): its state at once and "
                    "on every change, its progress, then end after its final state",
                    None,
                    extra={"404": error("No such job (or expired)")},
                ),
                "event: state (the job's JSON), event: progress, event: end",
            ),
        },
        "/events": {
            "get": _streaming(
                op(
                    "followEvents",
                    "A stream of every job's events (Server-Sent Events), filtered; it never "
                    "ends by itself. By default (detail=summary) each tick sends the newest "
                    "state of each job that changed in it as a summary (id, type, priority, "
                    "status, attempts, max_attempts, progress, created_at, completed_at, "
                    "error), at most 2,000 changes a second, then event: skipped with the "
                    "number left out; detail=full sends every event, states as whole records",
                    None,
                    params=[
                        {**query, "name": "type", "schema": {"type": "string"}},
                        {
                            **query,
                            "name": "status",
                            "schema": {"type": "string", "enum": [s.value for s in JobStatus]},
                        },
                        {
                            **query,
                            "name": "priority",
                            "schema": {"type": "string", "enum": [str(p) for p in Priority]},
                        },
                        {
                            **query,
                            "name": "detail",
                            "schema": {
                                "type": "string",
                                "enum": list(DETAILS),
                                "default": DETAILS[0],
                            },
                        },
                    ],
                ),
                "event: hello, then event: state (a job's summary, or its JSON with "
                "detail=full), event: progress and event: skipped",
            ),
        },
    }


def _streaming(operation: dict[str, Any], events: str) -> dict[str, Any]:
    operation["responses"]["200"] = {
        "description": f"A text/event-stream: {events}; a ': keep-alive' comment every 15 s "
        "without traffic; event: dropped before the stream ends when the client reads too "
        "slowly",
        "content": {_STREAM: {"schema": {"type": "string"}}},
    }
    return operation
