"""The seed's clients, unchanged, against a real ``trio-tasks serve``.

The seed's README ``curl`` lines, the requests of its Go client (``examples/client.go``) and of
its benchmarks (``benchmark_test.go``): ``POST /jobs?type=…&priority=…`` with a ``{}`` JSON body,
job types the seed never listed (``benchmark``, ``concurrent``), and status lines that Go shows
as ``resp.Status`` (``"202 Accepted"``).
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from _server import ServerProcess

pytestmark = pytest.mark.slow

#: The seed README's requests, as written there.
SEED_CURL_LINES = (
    "curl http://localhost:8080/health",
    "curl http://localhost:8080/stats",
    'curl -X POST "http://localhost:8080/jobs?type=email&priority=high"',
    "curl http://localhost:8080/workers",
)
#: The fields and JSON types the Go client decodes (examples/client.go).
GO_STATS = {
    "jobs_submitted": int,
    "jobs_completed": int,
    "jobs_failed": int,
    "workers_active": int,
    "queue_size": int,
    "uptime": str,
}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(env={"WORKER_NUM_WORKERS": "4", "WORKER_MAX_CONCURRENCY": "1000"}) as node:
        node.wait_ready()
        yield node


def request(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, dict[str, str], Any]:
    """One request on a fresh connection: status, reason phrase, headers, decoded JSON body."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        return response.status, response.reason, dict(response.getheaders()), json.loads(raw)
    finally:
        connection.close()


def test_the_seed_readme_curl_lines_answer_the_seeds_fields(server: ServerProcess) -> None:
    port = str(urlsplit(server.url).port)
    curl = shutil.which("curl")
    answers = []
    for line in SEED_CURL_LINES:
        if curl is None:
            pytest.skip("curl is not installed")
        argv = [a.strip('"') for a in line.replace("localhost:8080", f"127.0.0.1:{port}").split()]
        done = subprocess.run(
            [curl, "-sS", "-i", *argv[1:]], capture_output=True, text=True, timeout=10, check=True
        )
        head, _, body = done.stdout.partition("\n\n")  # text mode: \r\n read as \n
        answers.append((head.splitlines()[0], json.loads(body)))
    (health_line, health), (stats_line, stats), (submit_line, submitted), (_, workers) = answers
    assert health_line == "HTTP/1.1 200 OK"
    assert health["status"] == "healthy"
    assert stats_line == "HTTP/1.1 200 OK"
    assert all(isinstance(stats[name], kind) for name, kind in GO_STATS.items())
    assert submit_line == "HTTP/1.1 202 Accepted"
    assert submitted["status"] == "submitted"
    assert workers["workers"] == 4


def test_the_go_client_and_benchmark_requests_are_accepted(server: ServerProcess) -> None:
    go_headers = {"Content-Type": "application/json", "User-Agent": "Go-http-client/1.1"}
    # examples/client.go: every seed type and priority, a "{}" body beside the query.
    seen = []
    for job_type, priority in zip(
        ["email", "report", "backup", "sync", "cleanup"],
        ["low", "normal", "high", "urgent", "low"],
        strict=True,
    ):
        status, reason, _, answer = request(
            server.url, "POST", f"/jobs?type={job_type}&priority={priority}", b"{}", go_headers
        )
        seen.append((status, reason, answer["status"], answer["job_id"]))
    assert all(s[:3] == (202, "Accepted", "submitted") for s in seen)
    # benchmark_test.go: a type the seed never listed, sequentially and from many goroutines,
    # and a client adding a parameter of its own.
    results: list[tuple[int, str]] = []

    def submit(job_type: str) -> None:
        status, reason, _, _ = request(
            server.url, "POST", f"/jobs?type={job_type}&priority=normal&source=go", b"{}"
        )
        results.append((status, reason))

    for _ in range(5):
        submit("benchmark")
    threads = [threading.Thread(target=submit, args=("concurrent",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert results == [(202, "Accepted")] * 13
    for path in ("/health", "/stats", "/workers"):
        status, reason, headers, _ = request(server.url, "GET", path)
        assert (status, reason) == (200, "OK")
        assert headers["content-type"] == "application/json"
    # The jobs run the seed's generic simulation.
    deadline = time.monotonic() + 15
    while True:
        _, _, _, record = request(server.url, "GET", f"/jobs/{seen[0][3]}?wait=5s")
        if record["status"] == "completed" or time.monotonic() > deadline:
            break
    assert record["status"] == "completed"
    _, _, _, listing = request(server.url, "GET", "/jobs?type=benchmark&limit=5")
    assert listing["count"] == 5
    assert listing["jobs"][0]["type"] == "benchmark"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "reason"),
    [
        ("GET", "/jobs/nope", None, 404, "Not Found"),
        ("POST", "/jobs?priority=asap", None, 400, "Bad Request"),
        ("PATCH", "/jobs", None, 405, "Method Not Allowed"),
        ("DELETE", "/jobs/nope", None, 404, "Not Found"),
        ("GET", "//jobs//x", None, 404, "Not Found"),
    ],
)
def test_errors_carry_reason_phrases_and_json(
    server: ServerProcess, method: str, path: str, body: bytes | None, status: int, reason: str
) -> None:
    got_status, got_reason, headers, answer = request(server.url, method, path, body)
    assert (got_status, got_reason) == (status, reason)
    assert headers["content-type"] == "application/json"
    assert "error" in answer
