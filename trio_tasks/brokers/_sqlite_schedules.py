"""The SQLite broker's table of periodic jobs' state (paused, last tick, last job id).

A table of its own beside ``jobs``, created when missing (files of earlier releases gain it
at their next start; they ignore it if opened by one again).
"""

from __future__ import annotations

import sqlite3

from .._schedules import ScheduleState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL,
    last_tick REAL,
    last_job_id TEXT
)
"""
_SAVE = "INSERT OR REPLACE INTO schedules (name, paused, last_tick, last_job_id) VALUES (?,?,?,?)"


def load_schedules(connection: sqlite3.Connection) -> dict[str, ScheduleState]:
    """Create the table if missing and return every schedule's state in it."""
    connection.execute(_SCHEMA)
    rows = connection.execute("SELECT name, paused, last_tick, last_job_id FROM schedules")
    return {
        str(name): ScheduleState(
            paused=bool(paused),
            last_tick=None if tick is None else float(tick),
            last_job_id=None if job_id is None else str(job_id),
        )
        for name, paused, tick, job_id in rows
    }


def save_schedule(connection: sqlite3.Connection, name: str, state: ScheduleState) -> None:
    """Write the state of schedule ``name`` (one autocommit statement)."""
    connection.execute(_SAVE, (name, int(state.paused), state.last_tick, state.last_job_id))
