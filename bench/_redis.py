"""Redis broker benchmarks (filled in once the Redis broker lands)."""

from __future__ import annotations

from typing import Any


def run(quick: bool = False) -> dict[str, Any]:
    """Measure the Redis broker; reports why it was skipped when it cannot run."""
    return {"skipped": "the Redis broker is not available yet"}
