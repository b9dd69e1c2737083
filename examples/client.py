"""Talk to a running ``trio-tasks serve`` over HTTP, with the standard library only.

Start a server (``trio-tasks serve``), then run ``python examples/client.py`` (or pass
``--url http://host:port``; a server with ``API_TOKEN`` wants ``--token`` or
``TRIO_TASKS_TOKEN``). It checks the server's health, submits one job per priority in a
single all-or-nothing batch, follows each job to its end with long-polls, cancels one delayed
job and prints the statistics. It exits with status 1 if any job did not complete.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

FINAL = {"completed", "failed", "cancelled"}


class Client:
    """JSON over HTTP: ``call("POST", "/jobs", body)`` returns the decoded answer."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        """Send one request; an error answer raises ``urllib.error.HTTPError``."""
        query = f"?{urlencode(params)}" if params else ""
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.url + path + query, data=data, headers=headers, method=method
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def follow(self, job_id: str) -> dict[str, Any]:
        """Wait for a job to finish: each GET returns as soon as the job is final, or after 10s."""
        while True:
            job: dict[str, Any] = self.call("GET", f"/jobs/{quote(job_id, safe='')}", wait="10s")
            if job["status"] in FINAL:
                return job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", default=os.environ.get("TRIO_TASKS_TOKEN"))
    args = parser.parse_args()
    client = Client(args.url, args.token)

    health = client.call("GET", "/health")
    print(f"health: {health['status']}")

    # The seed's form: type and priority as query parameters.
    first = client.call("POST", "/jobs", type="email", priority="high")["job_id"]

    # A batch of JSON bodies: admitted all together, or not at all.
    batch = [
        {"type": "report", "priority": priority, "payload": {"duration": "50ms", "n": n}}
        for n, priority in enumerate(["low", "normal", "high", "urgent"])
    ]
    answer = client.call("POST", "/jobs/batch", batch)
    ids = [first] + [entry["job_id"] for entry in answer["jobs"]]

    # A delayed job, cancelled before it runs.
    delayed = client.call("POST", "/jobs", {"type": "cleanup", "delay": "1h"})["job_id"]
    cancelled = client.call("DELETE", f"/jobs/{delayed}")
    print(f"cancelled {delayed}: {cancelled['status']}")

    ok = True
    for job_id in ids:
        job = client.follow(job_id)
        print(f"{job['type']:<7} {job['priority']:<7} {job['status']} result={job['result']}")
        ok = ok and job["status"] == "completed"

    stats = client.call("GET", "/stats")
    print(
        f"submitted={stats['jobs_submitted']} completed={stats['jobs_completed']} "
        f"failed={stats['jobs_failed']} uptime={stats['uptime']}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
