"""schemathesis hooks for ``tests/test_openapi.py`` (loaded through ``SCHEMATHESIS_HOOKS``).

A generated ``GET /jobs/{id}?wait=42s`` on a job scheduled for later holds the request for 42 s,
as documented; fuzzing thousands of them would take the CI budget. Well-formed waits are cut to
a moment; malformed ones are kept, so their 400 answers are still checked.
"""

from __future__ import annotations

from typing import Any

import schemathesis

from trio_tasks import InvalidValue, parse_duration


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    if not query or "wait" not in query:
        return query
    try:
        seconds = parse_duration(query["wait"])
    except (InvalidValue, TypeError):
        return query
    return {**query, "wait": "0.1"} if seconds > 0.1 else query
