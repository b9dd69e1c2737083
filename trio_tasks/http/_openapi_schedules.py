"""The periodic-jobs part of the OpenAPI document: ``/schedules`` and pause / resume."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._openapi_schemas import REF

_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_.\-]{1,100}$"}


def schedule_paths(
    op: Callable[..., dict[str, Any]], error: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    """The path items, built with the document's operation and error helpers."""
    paths: dict[str, Any] = {
        "/schedules": {
            "get": op(
                "listSchedules",
                "Every periodic job: expression, timezone, next run, paused, last job id",
                "ScheduleList",
            )
        }
    }
    # Links, so that generated tests (schemathesis) reach a schedule that exists.
    first = {"name": "$response.body#/schedules/0/name"}
    paths["/schedules"]["get"]["responses"]["200"]["links"] = {
        "PauseSchedule": {"operationId": "pauseSchedule", "parameters": first},
        "ResumeSchedule": {"operationId": "resumeSchedule", "parameters": first},
    }
    for action, verb in (("pause", "Pause"), ("resume", "Resume")):
        paths[f"/schedules/{{name}}/{action}"] = {
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": _NAME}],
            "post": op(
                f"{action}Schedule",
                f"{verb} a periodic job on every node sharing the broker",
                "Schedule",
                extra={"404": error("No such schedule")},
            ),
        }
        other = "resume" if action == "pause" else "pause"
        paths[f"/schedules/{{name}}/{action}"]["post"]["responses"]["200"]["links"] = {
            other.title() + "Schedule": {
                "operationId": f"{other}Schedule",
                "parameters": {"name": "$response.body#/name"},
            }
        }
    return paths


def schedule_schemas() -> dict[str, Any]:
    """The schemas those paths refer to."""
    string, nullable_string = {"type": "string"}, {"type": ["string", "null"]}
    return {
        "Schedule": {
            "type": "object",
            "required": [
                "name",
                "job_type",
                "expression",
                "timezone",
                "priority",
                "catch_up",
                "paused",
                "next_run",
                "last_run",
                "last_job_id",
            ],
            "properties": {
                "name": string,
                "job_type": string,
                "expression": {
                    "type": "string",
                    "description": "a 5-field cron expression, or 'every <duration>'",
                },
                "timezone": string,
                "priority": string,
                "catch_up": {"type": "boolean"},
                "paused": {"type": "boolean"},
                "next_run": {"type": "string", "description": "RFC 3339, UTC"},
                "last_run": nullable_string,
                "last_job_id": nullable_string,
            },
        },
        "ScheduleList": {
            "type": "object",
            "required": ["schedules"],
            "properties": {"schedules": {"type": "array", "items": {"$ref": REF + "Schedule"}}},
        },
    }
