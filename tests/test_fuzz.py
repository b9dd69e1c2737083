"""Hostile and random requests against a real ``trio-tasks serve``, on each broker: every answer
is JSON and below 500, and the node keeps answering.

The hostile ones are the inputs that used to break a node (integers of thousands of digits, lone
surrogates, control characters, ``//`` paths, a megabyte of tiny items); hypothesis adds random
JSON bodies, ids and query strings (``TRIO_TASKS_FUZZ_EXAMPLES`` times 10 of each, 250 by default).
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from _server import ServerProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

EXAMPLES = 10 * int(os.environ.get("TRIO_TASKS_FUZZ_EXAMPLES", "25"))
MIB = 1_048_576

HOSTILE: list[tuple[str, str, bytes | None]] = [
    ("POST", "/jobs", b'{"payload": {"n": ' + b"9" * 4301 + b"}}"),
    ("POST", "/jobs", b'{"retries": ' + b"9" * 5000 + b"}"),
    ("POST", "/jobs", b'{"timeout": ' + b"9" * 400 + b"}"),
    ("POST", "/jobs", b'{"run_at": -' + b"9" * 400 + b"}"),
    ("POST", "/jobs", b'{"delay": 1e400}'),
    ("POST", "/jobs", b'{"job_id": "x\\ud800y"}'),
    ("POST", "/jobs", b'{"job_id": "x\\u0000y"}'),
    ("POST", "/jobs", b'{"type": "\\udfff"}'),
    ("POST", "/jobs", b'{"type": "t", "payload": {"\\ud800": "\\udc00x\\ud800"}}'),
    ("POST", "/jobs", b'{"job_id": "' + b"x" * 5000 + b'"}'),
    ("POST", "/jobs", b"[" * 100_000),
    ("POST", "/jobs", b'{"payload": {"a": [' + b",".join([b"[]"] * 60_000) + b"]}}"),
    ("POST", "/jobs", b'{"payload": {"a": "' + b"x" * (MIB - 100) + b'"}}'),
    ("POST", "/jobs/batch", b"[" + b",".join([b"{}"] * (MIB // 3)) + b"]"),
    ("POST", "/jobs/batch", json.dumps([{"type": "t"}] * 1001).encode()),
    ("POST", "/jobs/batch", b"[{}]" + b" " * 10),
    ("POST", "/jobs?type=%ED%A0%80&priority=%C2%B2", None),
    ("POST", "/jobs?retries=%C2%B2&limit=-1&timeout=1e999", None),
    ("POST", "/jobs?job_id=a%2Fb", None),
    ("POST", "/jobs?run_at=99999-01-01", None),
    ("GET", "//", None),
    ("GET", "//jobs", None),
    ("GET", "/jobs//x", None),
    ("GET", "/jobs/", None),
    ("GET", "/jobs/%ED%A0%80", None),
    ("GET", "/jobs/%00", None),
    ("GET", "/jobs/" + "x" * 5000, None),
    ("DELETE", "/jobs/%FF%FE", None),
    ("GET", "/jobs?limit=" + "9" * 5000, None),
    ("GET", "/jobs?limit=1000&status=%00&type=%ED%A0%80", None),
    ("GET", "/jobs/x?wait=" + "9" * 5000, None),
    ("GET", "/jobs/x?wait=nan", None),
    ("PUT", "/jobs", b"{}"),
    ("POST", "/health", b"{}"),
    ("GET", "/metrics?name[]=x", None),
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(st.characters(codec=None), max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
job_bodies = st.dictionaries(
    st.sampled_from(
        ["type", "priority", "payload", "timeout", "retries", "delay", "run_at", "job_id", "x"]
    ),
    json_values,
    max_size=8,
)


@pytest.fixture(scope="module", params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def node(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    env = {"WORKER_MAX_CONCURRENCY": "1000000", "WORKER_NUM_WORKERS": "4"}
    if request.param == "redis":
        env["BROKER_URL"] = (
            request.getfixturevalue("redis_server_url") + "?namespace=fuzz-" + (os.urandom(6).hex())
        )
    with ServerProcess(env=env) as server:
        server.wait_ready()
        yield server


class Connection:
    """One keep-alive connection, opened again after the server closed it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.connection: http.client.HTTPConnection | None = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.connection is not None:
            self.connection.close()

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, str, Any]:
        for attempt in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(*self.address, timeout=30)
            try:
                self.connection.request(method, path, body=body)
                response = self.connection.getresponse()
                raw = response.read()
            except (http.client.HTTPException, OSError):
                self.connection.close()
                self.connection = None
                if attempt:
                    raise
                continue
            if response.getheader("connection", "").lower() == "close":
                self.connection.close()
                self.connection = None
            kind = response.getheader("content-type", "")
            decoded = json.loads(raw) if raw and kind == "application/json" else raw or None
            return response.status, kind, decoded
        raise AssertionError("unreachable")


def check(answer: tuple[int, str, Any], what: object) -> None:
    status, kind, body = answer
    assert status < 500, (what, answer)
    if status != 204 and not (status == 200 and kind.startswith("text/plain")):
        assert kind == "application/json", (what, answer)
        assert isinstance(body, dict), (what, answer)


@pytest.mark.parametrize(("method", "path", "body"), HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_requests_get_a_json_4xx_or_success(
    node: ServerProcess, method: str, path: str, body: bytes | None
) -> None:
    with Connection(node.url) as connection:
        check(connection.request(method, path, body), (method, path, (body or b"")[:80]))
        check(connection.request("GET", "/health"), "health after")


def test_random_requests_get_a_json_4xx_or_success(node: ServerProcess) -> None:
    with Connection(node.url) as connection:
        fuzz_against(node, connection)


def fuzz_against(node: ServerProcess, connection: Connection) -> None:
    fuzz = settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )

    @fuzz
    @given(job_bodies, st.lists(job_bodies, max_size=3))
    def bodies(body: dict[str, Any], batch: list[dict[str, Any]]) -> None:
        check(connection.request("POST", "/jobs", json.dumps(body).encode()), body)
        check(connection.request("POST", "/jobs/batch", json.dumps(batch).encode()), batch)

    @fuzz
    @given(
        st.text(st.characters(codec=None), max_size=40),
        st.dictionaries(
            st.sampled_from(["type", "priority", "retries", "delay", "status", "limit", "wait"]),
            st.text(st.characters(codec=None), max_size=12),
            max_size=4,
        ),
    )
    def ids_and_queries(job_id: str, query: dict[str, str]) -> None:
        quoted = quote(job_id.encode("utf-8", "surrogatepass"), safe="")
        encoded = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in query.items()})
        query.pop("wait", None)  # a well-formed wait would hold the request for its length
        short = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in query.items()})
        check(connection.request("GET", f"/jobs/{quoted}?{short}"), (job_id, query))
        check(connection.request("DELETE", f"/jobs/{quoted}"), job_id)
        check(connection.request("POST", f"/jobs?{encoded}"), query)
        check(connection.request("GET", f"/jobs?{encoded}"), query)

    bodies()
    ids_and_queries()
    check(connection.request("GET", "/health"), "health after")
    errors = [r for r in node.records if r["level"] in ("error", "critical")]
    assert errors == []
