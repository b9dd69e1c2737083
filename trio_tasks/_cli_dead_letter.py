"""The failed-jobs client commands of ``trio-tasks``: ``jobs`` (a table of ``GET /jobs``, e.g.
``--status failed``) and ``retry`` (``POST /jobs/{id}/retry`` per id, or ``POST /jobs/retry``
with filters)."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote, urlencode

from ._cli_client import UsageError, _call, add_url

_COLUMNS = ("ID", "TYPE", "STATUS", "ATTEMPTS", "ERROR", "FINISHED AT")
#: Characters of an error message shown in the table.
_ERROR_WIDTH = 60


def add_commands(commands: Any) -> None:
    """Add ``jobs`` and ``retry`` to the ``trio-tasks`` sub-command parsers ``commands``."""
    jobs = commands.add_parser("jobs", help="list the jobs of a running server (a table)")
    jobs.add_argument("--status", help="only jobs in this status (e.g. failed)")
    jobs.add_argument("--type", help="only jobs of this type")
    jobs.add_argument("--limit", default="20", help="at most this many (default 20)")
    add_url(jobs)
    jobs.set_defaults(run=list_jobs)

    retry = commands.add_parser(
        "retry",
        help="queue failed or cancelled jobs of a running server again",
        description="Queue the jobs named again (failed or cancelled ones), or with --type "
        "and/or --since the failed jobs matching them (at most 100 per call).",
    )
    retry.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    retry.add_argument("--type", help="the failed jobs of this type")
    retry.add_argument("--since", help="the jobs failed since: RFC 3339, or a duration ago (1h)")
    add_url(retry)
    retry.set_defaults(run=retry_jobs)


def list_jobs(args: argparse.Namespace) -> int:
    """Print ``GET /jobs`` as a table, one job a line, newest first."""
    query = {"limit": args.limit, "status": args.status, "type": args.type}
    found = _call(args, "GET", "/jobs?" + urlencode({k: v for k, v in query.items() if v}))
    rows = [_COLUMNS]
    for job in found["jobs"]:
        error = (job.get("error") or {}).get("message") or "-"
        if len(error) > _ERROR_WIDTH:
            error = error[: _ERROR_WIDTH - 1] + "…"
        rows.append(
            (
                str(job["id"]),
                str(job["type"]),
                str(job["status"]),
                f"{job['attempts']}/{job['max_attempts']}",
                " ".join(error.split()),
                str(job["completed_at"] or "-"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    for row in rows:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]))
    return 0


def retry_jobs(args: argparse.Namespace) -> int:
    """Queue each job named again, or the failed jobs matching ``--type``/``--since``."""
    if args.job_ids and (args.type or args.since):
        raise UsageError("retry: name job ids or give --type/--since, not both")
    if not args.job_ids and not (args.type or args.since):
        raise UsageError("retry: name job ids, or give --type and/or --since")
    if args.job_ids:
        for job_id in args.job_ids:
            answer = _call(args, "POST", f"/jobs/{quote(job_id, safe='')}/retry", {})
            print(f"{answer['job_id']} requeued")
        return 0
    query = urlencode({k: v for k, v in (("type", args.type), ("since", args.since)) if v})
    answer = _call(args, "POST", f"/jobs/retry?{query}", {})
    print(f"{answer['requeued']} failed jobs requeued")
    for job_id in answer["job_ids"]:
        print(job_id)
    if answer["more"]:
        print(f"more match: run it again (at most {answer['limit']} per call)")
    return 0
