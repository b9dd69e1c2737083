"""Watch a running ``trio-tasks serve`` for failed jobs as they fail, with the standard library
only (docs/api.md, "Live events").

``GET /events?status=failed`` sends a summary of each job as it fails. When the node is too
busy to send every change (``event: skipped``), the example reads the failed jobs again with
``GET /jobs?status=failed``, so that none goes unseen.

Start a server (``trio-tasks serve``), then run ``python examples/watch_failures.py``
(``--url``, ``--token`` or ``TRIO_TASKS_TOKEN`` as in ``examples/client.py``; ``--count N`` to
stop after N failed jobs). It prints one line per failed job: its id, type and error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from typing import Any

from follow_job import events  # this directory's example: the text/event-stream reader


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", default=os.environ.get("TRIO_TASKS_TOKEN"))
    parser.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    args = parser.parse_args()
    base = args.url.rstrip("/")
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    seen: set[str] = set()

    def report(job: dict[str, Any]) -> None:
        if job["status"] == "failed" and job["id"] not in seen:
            seen.add(job["id"])
            error = job.get("error") or {}
            print(f"failed {job['id']} {job['type']}: {error.get('type')}: {error.get('message')}")

    def failed_jobs() -> list[dict[str, Any]]:
        listing = urllib.request.Request(f"{base}/jobs?status=failed&limit=1000", headers=headers)
        with urllib.request.urlopen(listing, timeout=30) as response:
            jobs: list[dict[str, Any]] = json.loads(response.read())["jobs"]
        return jobs

    request = urllib.request.Request(
        f"{base}/events?status=failed", headers={**headers, "Accept": "text/event-stream"}
    )
    # A keep-alive comment comes every 15 s when nothing fails: the read timeout is longer.
    with urllib.request.urlopen(request, timeout=60) as response:
        for name, data in events(response):
            if name == "hello":
                print("watching", flush=True)
            elif name == "state":
                report(data)
            elif name == "skipped":
                for job in reversed(failed_jobs()):  # oldest first, as they failed
                    report(job)
            sys.stdout.flush()
            if args.count and len(seen) >= args.count:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
