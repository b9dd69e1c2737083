"""The dashboard's part of the OpenAPI document: ``GET /stats/history`` (the counters of the
last 15 minutes) and ``GET /ui``, ``GET /ui/{name}`` (the dashboard's files, open without a
token)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._history import COUNTERS, INTERVAL, WINDOW

_FILE_TYPES = ("text/html", "text/javascript", "text/css", "image/svg+xml", "text/plain")


def ui_paths(
    op: Callable[..., dict[str, Any]], error: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    """The path items, built with the document's operation and error helpers."""
    index = op("dashboard", "The web dashboard (an HTML page; docs/dashboard.md)", None)
    asset = op(
        "dashboardFile",
        "A file of the web dashboard (script, style sheet, licence)",
        None,
        extra={"404": error("No such file"), "304": {"description": "Not modified (ETag)"}},
    )
    for operation in (index, asset):
        # The files hold no secrets: no token needed (the API calls they make carry it).
        operation["security"] = []
        operation["responses"]["200"] = {
            "description": "The file",
            "content": {kind: {} for kind in _FILE_TYPES},
        }
    index["responses"]["304"] = {"description": "Not modified (ETag)"}
    return {
        "/stats/history": {
            "get": op(
                "statsHistory",
                f"The job counters every {INTERVAL:g} s over the last {WINDOW / 60:g} minutes, "
                "oldest first (the cluster's on Redis)",
                "StatsHistory",
            )
        },
        "/ui": {"get": index},
        "/ui/{name}": {
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": asset,
        },
    }


def ui_schemas() -> dict[str, Any]:
    """The schemas those paths refer to."""
    counter = {"type": "integer", "minimum": 0}
    sample = {
        "type": "object",
        "required": ["time", *COUNTERS],
        "properties": {
            "time": {"type": "string", "format": "date-time"},
            **{name: counter for name in COUNTERS},
        },
    }
    return {
        "StatsHistory": {
            "type": "object",
            "required": ["interval_seconds", "window_seconds", "cluster", "samples"],
            "properties": {
                "interval_seconds": {"type": "number", "exclusiveMinimum": 0},
                "window_seconds": {"type": "number", "exclusiveMinimum": 0},
                "cluster": {"type": "boolean"},
                "samples": {"type": "array", "items": sample},
            },
        }
    }
