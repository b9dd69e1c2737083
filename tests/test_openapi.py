"""``GET /openapi.json`` describes every route, and stays true: schemathesis runs against a real
``trio-tasks serve`` on each broker (every operation, valid and invalid data, the submit → get →
cancel links) and finds no 5xx and no answer that breaks the document.

Bounded for CI: ``TRIO_TASKS_FUZZ_EXAMPLES`` examples per operation and phase (default 25, about
a thousand requests per broker in some 15 s); raise it for a longer hunt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _server import ROOT, ServerProcess

import trio_tasks
from trio_tasks.http import create_app
from trio_tasks.http._openapi import openapi_document

#: The schemathesis warnings that fail the run: every kind but ``missing_test_data``.
WARNINGS = (
    "missing_auth",
    "base_url_mismatch",
    "validation_mismatch",
    "missing_deserializer",
    "unused_openapi_auth",
    "unsupported_regex",
    "method_not_allowed",
)
#: The checks every answer must pass: no server error, and nothing the document does not say.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
EXAMPLES = int(os.environ.get("TRIO_TASKS_FUZZ_EXAMPLES", "25"))
TOKEN = "openapi-fuzz-token-0123456789"


async def test_the_document_describes_every_route() -> None:
    async with trio_tasks.open_processor(trio_tasks.demo_registry(), workers=0) as processor:
        app = create_app(processor)
        rules = {
            (rule.rule.replace("<job_id>", "{id}").replace("<name>", "{name}"), method.lower())
            for rule in app.url_map.iter_rules()
            for method in rule.methods or ()
            if method not in ("HEAD", "OPTIONS")
        }
        processor.shutdown(grace=0)
    document = openapi_document(processor.config)
    documented = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert document["openapi"] == "3.1.0"
    assert documented == rules
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert {"400", "401", "403"} <= set(operation["responses"]), (path, method)
    assert "security" not in document


def test_the_document_asks_for_the_token_when_one_is_set() -> None:
    config = trio_tasks.Config(api_token=TOKEN, metrics_public=True)
    document = openapi_document(config)
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/health"]["get"]["security"] == []
    assert document["paths"]["/metrics"]["get"]["security"] == []
    assert "security" not in document["paths"]["/stats"]["get"]


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_schemathesis_finds_no_5xx_and_no_answer_off_the_document(
    broker: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if schemathesis is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    env = {
        "WORKER_MAX_CONCURRENCY": "1000000",
        # Schedules that exist, for /schedules/{name}/pause and /resume.
        "SCHEDULES_FILE": str(ROOT / "examples" / "schedules.toml"),
    }
    headers: list[str] = []
    if broker == "redis":
        env["BROKER_URL"] = request.getfixturevalue("redis_url")
        # The Redis node also has a token: every request passes the guard first.
        env["API_TOKEN"] = TOKEN
        headers = ["-H", f"Authorization: Bearer {TOKEN}"]
    with ServerProcess(env=env) as node:
        url = node.wait_ready()
        run = subprocess.run(
            [
                schemathesis,
                "run",
                f"{url}/openapi.json",
                *headers,
                "--checks",
                ",".join(CHECKS),
                "--max-examples",
                str(EXAMPLES),
                "--request-timeout",
                "20",
                "--generation-database",
                "none",
                "--seed",
                "20261130",
                "--no-color",
                # Routes that take an id answer 404 to the ids the fuzzer invents: that is
                # their contract, not missing test data (the stateful phase uses real ids).
                "--warnings",
                ",".join(WARNINGS),
                # The event streams (Server-Sent Events) are left out: /events never ends, and
                # a job's stream ends only with the job, so a fuzzed request would hold until
                # --request-timeout and fail the run; nor can schemathesis check a
                # text/event-stream body. tests/test_events.py checks both routes' answers
                # (the stream format, 400 on bad filters, 404 on unknown ids, 401).
                "--exclude-operation-id",
                "followEvents",
                "--exclude-operation-id",
                "followJob",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
                "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(ROOT)]),
            },
        )
        alive = node.process.poll() is None
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout, run.stdout[-8000:]
    assert alive
    errors = [r for r in node.records if r["level"] in ("error", "critical")]
    assert errors == []
