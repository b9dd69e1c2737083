"""Follow a job live over the event stream of a running ``trio-tasks serve``, with the standard
library only (docs/api.md, "Live events").

Start a server (``trio-tasks serve``), then run ``python examples/follow_job.py`` to submit a
``report`` job and follow it, or ``python examples/follow_job.py JOB_ID`` to follow a job
submitted before (``--url``, ``--token`` or ``TRIO_TASKS_TOKEN`` as in ``examples/client.py``).
It prints one line per event (the state, each progress report, the end) and exits with status 0
if the job completed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote


def events(response: Any) -> Iterator[tuple[str, Any]]:
    """``(event name, decoded data)`` for each event of a text/event-stream, read line by line.

    An event is an ``event:`` line, a ``data:`` line and a blank line; lines starting with ``:``
    are comments (the server's keep-alive every 15 s).
    """
    name, data = "message", ""
    for raw in response:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line.startswith(":"):
            continue
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif not line and data:
            yield name, json.loads(data)
            name, data = "message", ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job_id", nargs="?", help="the job to follow (default: submit one)")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", default=os.environ.get("TRIO_TASKS_TOKEN"))
    parser.add_argument("--type", default="report", help="the type of the job to submit")
    parser.add_argument("--payload", default="{}", help="its payload, a JSON object")
    args = parser.parse_args()
    base = args.url.rstrip("/")
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}

    job_id = args.job_id
    if job_id is None:
        body = json.dumps({"type": args.type, "payload": json.loads(args.payload)}).encode()
        submit = urllib.request.Request(
            f"{base}/jobs", body, {**headers, "Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(submit, timeout=30) as response:
            job_id = json.loads(response.read())["job_id"]
        print(f"submitted {job_id}")

    # The stream ends after the job's final state; a keep-alive comes every 15 s meanwhile.
    request = urllib.request.Request(
        f"{base}/jobs/{quote(job_id, safe='')}/events",
        headers={**headers, "Accept": "text/event-stream"},
    )
    status = None
    with urllib.request.urlopen(request, timeout=60) as response:
        for name, data in events(response):
            if name == "state":
                status = data["status"]
                print(f"state {status} (attempt {data['attempts']} of {data['max_attempts']})")
            elif name == "progress":
                print(f"progress {json.dumps(data['progress'])}")
            elif name == "end":
                print(f"end {data['status']}")
                break
    return 0 if status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
