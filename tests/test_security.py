"""Who may call a real ``trio-tasks serve``: tokens, origins, hosts, TLS, connection limits, and
secrets that are never printed. See docs/security.md."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from _server import ROOT, ServerProcess

from trio_tasks._hypercorn import connection_limit

pytestmark = pytest.mark.slow

WRITE_1 = "write-token-aaaaaaaaaaaa"
WRITE_2 = "write-token-bbbbbbbbbbbb"
READ = "read-token-cccccccccccccc"


def call(
    url: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request: status, headers (lower-case names), decoded JSON body (or ``None``)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=10, context=context
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        json_body = response.getheader("content-type", "").startswith("application/json")
        answer = json.loads(raw) if raw and json_body else raw or None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, answer
    finally:
        connection.close()


@pytest.fixture(scope="module")
def guarded() -> Iterator[ServerProcess]:
    env = {
        "API_TOKEN": f"{WRITE_1}, {WRITE_2}",
        "API_READ_TOKEN": READ,
        "CORS_ORIGINS": "https://app.example.org",
        "ALLOWED_HOSTS": "127.0.0.1,tasks.example.org",
        "LOG_LEVEL": "debug",
    }
    with ServerProcess(env=env) as node:
        node.wait_ready()
        yield node


# -- tokens ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/stats", "/workers", "/jobs", "/metrics", "/openapi.json", "/"])
def test_every_endpoint_but_health_needs_a_token(guarded: ServerProcess, path: str) -> None:
    status, headers, answer = call(guarded.url, "GET", path)
    assert status == 401
    assert headers["www-authenticate"].startswith("Bearer")
    assert headers["content-type"] == "application/json"
    assert answer == {"error": "missing API token: send Authorization: Bearer <token>"}
    assert call(guarded.url, "GET", "/health")[0] == 200


def test_tokens_rotate_and_a_read_token_only_reads(guarded: ServerProcess) -> None:
    for token in (WRITE_1, WRITE_2):
        status, _, answer = call(guarded.url, "POST", "/jobs?type=email", token=token)
        assert status == 202, answer
    job_id = answer["job_id"]
    assert call(guarded.url, "GET", f"/jobs/{job_id}", token=READ)[0] == 200
    assert call(guarded.url, "GET", "/metrics", token=READ)[0] == 200
    status, headers, answer = call(guarded.url, "POST", "/jobs", token=READ)
    assert status == 403
    assert 'error="insufficient_scope"' in headers["www-authenticate"]
    assert call(guarded.url, "DELETE", f"/jobs/{job_id}", token=READ)[0] == 403
    status, headers, answer = call(guarded.url, "GET", "/stats", token=WRITE_1 + "x")
    assert status == 401
    assert answer == {"error": "invalid API token"}
    assert 'error="invalid_token"' in headers["www-authenticate"]
    assert (
        call(guarded.url, "GET", "/stats", headers={"Authorization": f"Basic {WRITE_1}"})[0] == 401
    )
    # No token ever reaches the logs, even at debug level.
    text = "\n".join(guarded.stdout_lines + guarded.stderr_lines)
    assert all(token not in text for token in (WRITE_1, WRITE_2, READ))


def test_the_cli_sends_its_token(guarded: ServerProcess) -> None:
    def stats(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trio_tasks", "stats", "--url", guarded.url, *args],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
            env={**_clean_env(), **(env or {})},
        )

    refused = stats()
    by_flag = stats("--token", READ)
    by_env = stats(env={"TRIO_TASKS_TOKEN": READ})
    assert refused.returncode == 1
    assert "HTTP 401: missing API token" in refused.stderr
    assert by_flag.returncode == 0, by_flag.stderr
    assert json.loads(by_env.stdout)["workers"] == 2


def test_the_example_client_needs_only_the_standard_library(guarded: ServerProcess) -> None:
    # -S: no site-packages at all, as after the README's install (no httpx, no trio-tasks).
    run = subprocess.run(
        [sys.executable, "-S", str(ROOT / "examples" / "client.py"), "--url", guarded.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_clean_env(), "TRIO_TASKS_TOKEN": WRITE_2},
    )
    assert run.returncode == 0, run.stderr
    assert "health: healthy" in run.stdout


# -- origins and hosts -----------------------------------------------------------------------


def test_cross_origin_writes_are_refused_unless_listed(guarded: ServerProcess) -> None:
    own = guarded.url
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    status, _, answer = call(own, "POST", "/jobs", token=WRITE_1, headers=evil, body=b"{}")
    assert status == 403
    assert "cross-origin request refused" in answer["error"]
    assert call(own, "DELETE", "/jobs/x", token=WRITE_1, headers=evil)[0] == 403
    # A cross-origin read gets no CORS header, so a browser does not show it to the page.
    status, headers, _ = call(own, "GET", "/stats", token=READ, headers=evil)
    assert status == 200
    assert "access-control-allow-origin" not in headers
    # The server's own origin is not cross-origin.
    assert call(own, "POST", "/jobs", token=WRITE_1, headers={"Origin": own})[0] == 202
    # A listed origin: preflight, then the request with CORS headers.
    app = {"Origin": "https://app.example.org"}
    preflight = {**app, "Access-Control-Request-Method": "POST"}
    status, headers, _ = call(own, "OPTIONS", "/jobs", headers=preflight)
    assert status == 204
    assert headers["access-control-allow-origin"] == "https://app.example.org"
    assert "Authorization" in headers["access-control-allow-headers"]
    status, headers, _ = call(own, "POST", "/jobs", token=WRITE_1, headers=app)
    assert status == 202
    assert headers["access-control-allow-origin"] == "https://app.example.org"


def test_the_host_header_is_checked(guarded: ServerProcess) -> None:
    port = urlsplit(guarded.url).port
    ok = call(
        guarded.url, "GET", "/stats", token=READ, headers={"Host": f"tasks.example.org:{port}"}
    )
    status, _, answer = call(
        guarded.url, "GET", "/stats", token=READ, headers={"Host": "rebound.example"}
    )
    health = call(guarded.url, "GET", "/health", headers={"Host": "rebound.example"})
    assert ok[0] == 200
    assert status == 400
    assert answer == {"error": "host 'rebound.example' is not allowed (ALLOWED_HOSTS)"}
    assert health[0] == 200


def test_metrics_can_be_public_and_a_network_address_without_token_warns() -> None:
    env = {"SERVER_HOST": "0.0.0.0", "METRICS_PUBLIC": "true"}
    with ServerProcess(env=env) as node:
        node.wait_ready()
        warning = node.wait_for_log(
            "http api open to the network without a token: anyone who can reach it may "
            "submit, read and cancel jobs"
        )
        port = urlsplit(node.url).port
        status, headers, _ = call(f"http://127.0.0.1:{port}", "GET", "/metrics")
    assert warning["level"] == "warning"
    assert status == 200
    assert headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"API_TOKEN": "short-secret"}, "API_TOKEN='***': expected tokens of at least 16"),
        ({"API_READ_TOKEN": READ}, "API_READ_TOKEN='***': expected API_TOKEN as well"),
        ({"TLS_CERTFILE": "/nonexistent.pem"}, "TLS_KEYFILE (not set"),
        ({"CORS_ORIGINS": "app.example.org"}, "CORS_ORIGINS='app.example.org': expected origins"),
    ],
)
def test_bad_security_settings_stop_start_up_without_showing_secrets(
    env: dict[str, str], needle: str
) -> None:
    with ServerProcess(env=env) as node:
        status = node.wait_exit(30)
    assert status == 2
    assert len(node.stderr_lines) == 1, node.stderr_lines
    assert needle in node.stderr_lines[0]
    assert "short-secret" not in node.stderr_lines[0]
    assert READ not in node.stderr_lines[0]


# -- TLS -------------------------------------------------------------------------------------


def test_tls_with_a_certificate_the_test_makes(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.private_key_and_cert_chain_pem.write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    context = ssl.create_default_context()
    authority.configure_trust(context)
    with ServerProcess("serve", "--certfile", str(cert), "--keyfile", str(key)) as node:
        url = node.wait_ready()
        status, _, answer = call(url, "GET", "/health", context=context)
        with pytest.raises(ssl.SSLError):
            call(url, "GET", "/health", context=ssl.create_default_context())
    assert url.startswith("https://")
    assert (status, answer["status"]) == (200, "healthy")


# -- connections -----------------------------------------------------------------------------


def test_connections_are_bounded_below_the_open_file_limit() -> None:
    assert connection_limit(1024) == 720
    assert connection_limit(1_000_000) == 4096
    assert connection_limit(20) == 8
    limit = connection_limit(200)
    with ServerProcess(open_files=200) as node:
        url = node.wait_ready()
        parts = urlsplit(url)
        address = (parts.hostname, parts.port)
        idle = [socket.create_connection(address, timeout=5) for _ in range(limit)]
        try:
            time.sleep(0.5)
            with socket.create_connection(address, timeout=5) as extra:
                refused = extra.recv(4096)
            # Idle connections that never send their headers are closed after 5 s.
            deadline = time.monotonic() + 15
            while True:
                try:
                    status = call(url, "GET", "/health")[0]
                except (OSError, http.client.HTTPException):
                    status = 0
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            for sock in idle:
                sock.close()
    assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert refused.endswith(
        b'{"error":"too many connections: the server is at its limit; retry"}\n'
    )
    assert status == 200


# -- secrets ---------------------------------------------------------------------------------


@pytest.mark.redis
def test_broker_passwords_are_never_printed(tmp_path: Path) -> None:
    from redis_server import redis_binary, skip_or_fail

    if redis_binary() is None:
        skip_or_fail("redis-server is not installed")
    password = "s3cret-redis-pass"
    redis = _PasswordRedis(tmp_path / "redis", password)
    redis.start()
    try:
        base = f"127.0.0.1:{redis.port}/0"
        with ServerProcess(env={"BROKER_URL": f"redis://{base}?password={password}"}) as node:
            url = node.wait_ready()
            started = node.wait_for_log("trio-tasks started")
            health = call(url, "GET", "/health")
            node.send_signal(__import__("signal").SIGTERM)
            node.wait_exit(30)
        with ServerProcess(env={"BROKER_URL": f"redis://:wrong-{password}@{base}"}) as wrong:
            status = wrong.wait_exit(30)
    finally:
        redis.kill()
    assert started["broker"] == f"redis://{base}?password=***"
    assert health[0] == 200
    assert all(password not in line for line in node.stdout_lines + node.stderr_lines)
    assert status == 2
    assert len(wrong.stderr_lines) == 1, wrong.stderr_lines
    assert wrong.stderr_lines[0].startswith(f"trio-tasks: error: BROKER_URL='redis://:***@{base}'")
    assert "Redis refused the credentials" in wrong.stderr_lines[0]
    assert all(password not in line for line in wrong.stdout_lines + wrong.stderr_lines)


class _PasswordRedis:
    """A redis-server with ``requirepass`` (PING needs AUTH, so readiness is read from its log)."""

    def __init__(self, directory: Path, password: str) -> None:
        from redis_server import RedisServer

        self.server = RedisServer(directory, extra=("--requirepass", password))
        self.port = self.server.port

    def start(self) -> None:
        self.server.answers = self._answers  # type: ignore[method-assign]
        self.server.start()

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"-NOAUTH")
        except OSError:
            return False

    def kill(self) -> None:
        self.server.kill()


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("TRIO_TASKS_")}
