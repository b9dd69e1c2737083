"""Module-level handlers for the process-isolation benchmark (a process imports them by name)."""

from __future__ import annotations

from typing import Any


def noop(ctx: Any) -> None:
    """Do nothing, in a worker process."""
    return None
