"""Talk to a running ``trio-tasks serve`` over HTTP with httpx.

Start a server (``trio-tasks serve``), then run ``python examples/client.py`` (or pass
``--url http://host:port``). It checks the server's health, submits one job per priority in a
single all-or-nothing batch, follows each job to its end with long-polls, cancels one delayed
job and prints the statistics. It exits with status 1 if any job did not complete.
"""

from __future__ import annotations

import argparse
import sys

import httpx

FINAL = {"completed", "failed", "cancelled"}


def follow(client: httpx.Client, job_id: str) -> dict[str, object]:
    """Wait for a job to finish: each GET returns as soon as the job is final, or after 10s."""
    while True:
        answer = client.get(f"/jobs/{job_id}", params={"wait": "10s"})
        answer.raise_for_status()
        job: dict[str, object] = answer.json()
        if job["status"] in FINAL:
            return job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    url = parser.parse_args().url

    with httpx.Client(base_url=url, timeout=30) as client:
        health = client.get("/health").json()
        print(f"health: {health['status']}")

        # The seed's form: type and priority as query parameters.
        answer = client.post("/jobs", params={"type": "email", "priority": "high"})
        answer.raise_for_status()
        first = answer.json()["job_id"]

        # A batch of JSON bodies: admitted all together, or not at all.
        batch = [
            {"type": "report", "priority": priority, "payload": {"duration": "50ms", "n": n}}
            for n, priority in enumerate(["low", "normal", "high", "urgent"])
        ]
        answer = client.post("/jobs/batch", json=batch)
        answer.raise_for_status()
        ids = [first] + [entry["job_id"] for entry in answer.json()["jobs"]]

        # A delayed job, cancelled before it runs.
        delayed = client.post("/jobs", json={"type": "cleanup", "delay": "1h"}).json()["job_id"]
        cancelled = client.delete(f"/jobs/{delayed}").json()
        print(f"cancelled {delayed}: {cancelled['status']}")

        ok = True
        for job_id in ids:
            job = follow(client, job_id)
            print(f"{job['type']:<7} {job['priority']:<7} {job['status']} result={job['result']}")
            ok = ok and job["status"] == "completed"

        stats = client.get("/stats").json()
        print(
            f"submitted={stats['jobs_submitted']} completed={stats['jobs_completed']} "
            f"failed={stats['jobs_failed']} uptime={stats['uptime']}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
