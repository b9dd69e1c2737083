"""Failed jobs you can act on: the filters of a bulk retry (``POST /jobs/retry``).

Failed jobs are kept for ``FAILED_TTL`` (the brokers' retention) and queued again one by one
with :meth:`Broker.retry <trio_tasks.brokers._base.Broker.retry>`; this module picks which.
"""

from __future__ import annotations

import attrs

from ._durations import parse_duration
from ._errors import InvalidValue
from ._job import Job, parse_time

#: The most jobs one bulk retry queues again; call again (it answers ``more``) for the rest.
RETRY_MAX = 100
#: The most failed jobs one bulk retry looks at (newest first) to find them.
RETRY_SCAN = 1_000


def parse_since(value: str | float | None, now: float) -> float | None:
    """The moment ``since`` names, in POSIX seconds: an RFC 3339 time, or a Go duration
    (``"1h"``, ``"30m"``) or a number of seconds before ``now``; ``None`` for no filter.

    Raises:
        InvalidValue: neither form; the message shows both.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and ("-" in value or ":" in value):
        return parse_time(value, name="since")
    try:
        return now - parse_duration(value, name="since")
    except InvalidValue:
        raise InvalidValue(
            f"since: expected an RFC 3339 time like 2024-01-01T12:00:00Z or a duration like "
            f"1h30m, got {value!r}"
        ) from None


def pick_failed(jobs: list[Job], since: float | None, limit: int) -> tuple[list[Job], bool]:
    """The failed ``jobs`` that failed at or after ``since``, at most ``limit`` of them, and
    whether more matched."""
    matching = [
        job
        for job in jobs
        if since is None or (job.completed_at is not None and job.completed_at >= since)
    ]
    return matching[:limit], len(matching) > limit


@attrs.frozen
class RetryBatch:
    """What :meth:`Processor.retry_failed <trio_tasks.Processor.retry_failed>` did."""

    #: The jobs queued again, as queued.
    jobs: tuple[Job, ...]
    #: Whether more failed jobs matched than one call queues: call again for them.
    more: bool
