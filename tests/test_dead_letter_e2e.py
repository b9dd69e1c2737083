"""The dead-letter list over HTTP and from the command line, against a real ``trio-tasks
serve`` (``tests/_server.py``): ``POST /jobs/{id}/retry``, ``POST /jobs/retry``,
``trio-tasks jobs --status failed`` and ``trio-tasks retry``."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from _server import ServerProcess

from trio_tasks.cli import main

TOKEN = "dead-letter-token"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with ServerProcess(env={"API_TOKEN": TOKEN, "WORKER_RETRY_ATTEMPTS": "0"}) as node:
        yield node.wait_ready()


def call(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def failed_job(url: str, job_id: str, job_type: str = "email") -> dict[str, Any]:
    body = {"type": job_type, "job_id": job_id, "payload": {"fail": True, "duration": "1ms"}}
    assert call(url, "POST", "/jobs", body)[0] == 202
    status, job = call(url, "GET", f"/jobs/{job_id}?wait=10s")
    assert (status, job["status"]) == (200, "failed")
    return job


def wait_final(url: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        job = call(url, "GET", f"/jobs/{job_id}?wait=5s")[1]
        if job["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            return job


def test_retry_one_job_over_http(url: str) -> None:
    failed_job(url, "http-1")
    status, answer = call(url, "POST", "/jobs/http-1/retry")
    assert status == 200
    assert answer["status"] == "requeued"
    assert answer["job"]["attempts"] == 0
    job = wait_final(url, "http-1")
    assert job["status"] == "failed"
    assert [e["message"] for e in job["errors"]] == ["simulated failure on attempt 1"]
    assert call(url, "POST", "/jobs/no-such-job/retry")[0] == 404
    call(url, "POST", "/jobs", {"type": "email", "job_id": "http-ok", "payload": {}})
    assert wait_final(url, "http-ok")["status"] == "completed"
    status, error = call(url, "POST", "/jobs/http-ok/retry")
    assert status == 409
    assert "completed" in error["error"]


def test_retry_in_bulk_over_http(url: str) -> None:
    for n in range(3):
        failed_job(url, f"bulk-{n}", job_type="sync")
    status, answer = call(url, "POST", "/jobs/retry?type=sync&since=1h")
    assert status == 200
    assert (answer["requeued"], answer["limit"], answer["more"]) == (3, 100, False)
    assert sorted(answer["job_ids"]) == ["bulk-0", "bulk-1", "bulk-2"]
    assert call(url, "POST", "/jobs/retry?since=yesterday")[0] == 400


def test_the_cli_lists_failed_jobs_and_retries_them(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    failed_job(url, "cli-1", job_type="report")
    auth = ["--url", url, "--token", TOKEN]
    assert main(["jobs", "--status", "failed", "--type", "report", "--limit", "5", *auth]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "TYPE", "STATUS", "ATTEMPTS", "ERROR", "FINISHED", "AT"]
    assert lines[1].startswith("cli-1 ")
    assert "simulated failure on attempt 1" in lines[1]
    assert main(["retry", "cli-1", *auth]) == 0
    assert capsys.readouterr().out == "cli-1 requeued\n"
    assert wait_final(url, "cli-1")["status"] == "failed"
    assert main(["retry", "--type", "report", "--since", "1h", *auth]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["1 failed jobs requeued", "cli-1"]
    assert main(["retry", "no-such-job", *auth]) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert main(["retry", *auth]) == 2
