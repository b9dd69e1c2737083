"""The schemas (``components.schemas``) of the OpenAPI document: requests and answers."""

from __future__ import annotations

from typing import Any

from .._job import JOB_FIELDS, JobStatus, Priority
from .._request import MAX_DELAY, MAX_NAME_LENGTH, MAX_RETRIES, MAX_TIMEOUT
from ._figures import SEED_STATS

#: Where a schema of :func:`schemas` is referred to.
REF = "#/components/schemas/"

_CONTROL = r"\u0000-\u001f\u007f-\u009f"
_ALLOWED = f"[^{_CONTROL}/]"


def name_schema() -> dict[str, Any]:
    """A job id or type: what ``JobRequest`` accepts."""
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


def schemas() -> dict[str, Any]:
    """Every schema the document refers to, by name."""
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
            # The seed's fields: integers, and uptime as a Go duration.
            "required": list(SEED_STATS),
            "properties": {
                **{name: string if name == "uptime" else integer for name in SEED_STATS},
                "queue_wait_seconds": percentiles,
                "run_time_seconds": percentiles,
                "limits": {
                    "type": "object",
                    "description": "each job type with a concurrency or rate limit "
                    "(cluster-wide on Redis): its limits, jobs running, jobs held back",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["concurrency", "rate", "running", "held"],
                        "properties": {
                            "concurrency": {"type": ["integer", "null"], "minimum": 1},
                            "rate": {"type": ["string", "null"], "examples": ["100/m"]},
                            "running": integer,
                            "held": integer,
                        },
                    },
                },
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
                "type": {**name_schema(), "default": "default"},
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
                "job_id": name_schema(),
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
                "jobs": {"type": "array", "items": {"$ref": REF + "Admitted"}},
                "submitted": integer,
                "existing": integer,
            },
        },
        "Job": {
            "type": "object",
            # Every field job_to_json renders: JOB_FIELDS, the one definition of a job's fields.
            "required": [f.name for f in JOB_FIELDS],
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
                "errors": {
                    "type": "array",
                    "description": "the last error of each earlier run (POST /jobs/{id}/retry)",
                    "items": {
                        "type": "object",
                        "required": ["attempt", "time", "type", "message"],
                        "properties": {
                            "attempt": integer,
                            "time": nullable_string,
                            "type": string,
                            "message": string,
                        },
                    },
                },
            },
        },
        "JobList": {
            "type": "object",
            "required": ["jobs", "count", "truncated"],
            "properties": {
                "jobs": {"type": "array", "items": {"$ref": REF + "Job"}},
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
                "job": {"$ref": REF + "Job"},
            },
        },
    }
