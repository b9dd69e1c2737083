"""The dashboard's server side: its files at ``/ui`` (types, caching, Content-Security-Policy,
open without a token), the counters' history behind its chart (``GET /stats/history``), and
what its scripts may not do. The pages themselves are driven in a real browser by
``tests/test_dashboard_browser.py``."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_tasks
from trio_tasks._config import build_config
from trio_tasks._processor import Processor
from trio_tasks.http import create_app
from trio_tasks.http._history import HISTORY_KEY, History
from trio_tasks.http._openapi import openapi_document
from trio_tasks.http._ui import CONTENT_SECURITY_POLICY, load_assets

UI = Path(trio_tasks.__file__).parent / "http" / "ui"
TOKEN = "dashboard-token-0123456789"


@asynccontextmanager
async def app_of(**settings: Any) -> AsyncIterator[tuple[Processor, Any]]:
    settings.setdefault("workers", 2)
    config = build_config(**settings)
    async with trio_tasks.open_processor(trio_tasks.demo_registry(), config=config) as processor:
        app = create_app(processor, config)
        app.config["PROPAGATE_EXCEPTIONS"] = True
        yield processor, app
        processor.shutdown(grace=0)


# -- the files -------------------------------------------------------------------------------


async def test_the_page_and_its_files_are_served_with_their_types_and_policy() -> None:
    async with app_of() as (_, app):
        client = app.test_client()
        page = await client.get("/ui")
        html = (await page.get_data()).decode()
        slash = await client.get("/ui/")
        script = await client.get("/ui/app.js")
        style = await client.get("/ui/app.css")
        icon = await client.get("/ui/favicon.svg")
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert slash.status_code == 200
    assert await slash.get_data() == await page.get_data()
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert style.headers["Content-Type"] == "text/css; charset=utf-8"
    assert icon.headers["Content-Type"] == "image/svg+xml"
    for response in (page, script, style, icon):
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["ETag"].startswith('"')
    # The policy allows no inline script, and the page has none (nor inline handlers).
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
    assert re.search(r"\son[a-z]+=", html) is None


async def test_a_known_etag_gets_a_304_and_an_unknown_file_a_404_json() -> None:
    async with app_of() as (_, app):
        client = app.test_client()
        first = await client.get("/ui/app.js")
        again = await client.get("/ui/app.js", headers={"If-None-Match": first.headers["ETag"]})
        changed = await client.get("/ui/app.js", headers={"If-None-Match": '"other"'})
        missing = await client.get("/ui/nope.js")
        nested = await client.get("/ui/a/b.js")
        traversal = await client.get("/ui/..%2f_ui.py")
    assert again.status_code == 304
    assert await again.get_data() == b""
    assert changed.status_code == 200
    assert missing.status_code == 404
    assert (await missing.get_json())["error"] == "no dashboard file 'nope.js'"
    assert nested.status_code == 404
    assert nested.headers["Content-Type"] == "application/json"
    assert traversal.status_code == 404


async def test_the_files_need_no_token_but_the_api_and_writes_still_do() -> None:
    async with app_of(api_token=TOKEN) as (_, app):
        client = app.test_client()
        page = await client.get("/ui")
        script = await client.get("/ui/api.js")
        stats = await client.get("/stats")
        history = await client.get("/stats/history")
        # Routed as written: no way from /ui to another route without the token.
        around = await client.get("/ui/../stats")
        other = await client.get("/uix")
        write = await client.post("/ui")
        with_token = await client.get(
            "/stats/history", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert (page.status_code, script.status_code) == (200, 200)
    assert (stats.status_code, history.status_code) == (401, 401)
    assert around.status_code == 404
    assert "jobs_submitted" not in (await around.get_data()).decode()
    assert (other.status_code, write.status_code) == (401, 401)
    assert with_token.status_code == 200


def test_every_file_the_page_names_exists_and_the_whole_is_small() -> None:
    assets = load_assets()
    html = assets["index.html"].body.decode()
    named = set(re.findall(r'(?:src|href)="/ui/([^"]+)"', html))
    for name, asset in assets.items():
        if name.endswith(".js"):
            named |= set(re.findall(r'from "\./([^"]+)"', asset.body.decode()))
    assert named
    assert named <= set(assets), named - set(assets)
    assert sum(len(a.body) for a in assets.values()) < 300_000


def test_the_scripts_never_write_html() -> None:
    # Job types, payloads and errors are hostile input: every value goes in as text
    # (textContent, text nodes, attribute values), never parsed as HTML.
    for path in UI.glob("*.js"):
        source = path.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, (path.name, sink)


@pytest.mark.slow
def test_the_wheel_holds_the_dashboard(tmp_path: Path) -> None:
    root = Path(__file__).parent.parent
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("trio_tasks-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in UI.iterdir():
        assert f"trio_tasks/http/ui/{path.name}" in names


# -- GET /stats/history ----------------------------------------------------------------------


async def test_the_sampler_records_every_interval_for_the_window(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with app_of() as (processor, _app):
        history = History(processor, interval=10, window=60)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(history.run)
            await trio.sleep(5)
            for _ in range(3):
                await processor.submit("email", payload={"duration": "1s"})
            await trio.sleep(20)
            after_three = [s.completed for s in history.samples]
            assert [s.submitted for s in history.samples] == [0, 3, 3]
            await trio.sleep(1000)
            history.stop()
        assert after_three == [0, 3, 3]
        # 60 s of history: seven samples (the first gives the window's first difference).
        assert len(history.samples) == 7
        times = [s.time for s in history.samples]
        assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [10.0] * 6
        body = history.to_json()
        assert body["interval_seconds"] == 10
        assert body["cluster"] is False
        assert body["samples"][-1]["completed"] == 3


async def test_a_stopped_sampler_never_runs_and_the_route_answers_the_ring(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with app_of() as (processor, app):
        history: History = app.extensions[HISTORY_KEY]
        history.stop()
        await history.run()
        assert list(history.samples) == []
        await processor.submit("email", payload={"duration": "1s"})
        sample = await history.sample()
        assert sample is not None
        history.samples.append(sample)
        response = await app.test_client().get("/stats/history")
        body = await response.get_json()
    assert response.status_code == 200
    assert body["window_seconds"] == 900
    assert body["interval_seconds"] == 10
    assert [s["submitted"] for s in body["samples"]] == [1]
    assert body["samples"][0]["time"].endswith("Z")


async def test_the_sampler_stops_with_the_server() -> None:
    config = build_config(workers=1, server_host="127.0.0.1", server_port=0)
    async with trio_tasks.open_processor(trio_tasks.demo_registry(), config=config) as processor:
        # A bound, not a timing: the nursery never exits if the sampler outlives the server.
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(trio_tasks.serve, processor, config)
                # Stopping the processor stops the server, and the sampler with it.
                processor.shutdown(grace=0)


@pytest.mark.redis
async def test_on_redis_the_history_is_the_clusters(redis_url: str) -> None:
    registry = trio_tasks.demo_registry()
    async with (
        trio_tasks.open_processor(registry, broker=redis_url, workers=0) as producer,
        trio_tasks.open_processor(registry, broker=redis_url, workers=0) as other,
    ):
        before = await History(other).sample()
        for _ in range(2):
            await producer.submit("email")
        after = await History(other).sample()
        producer.shutdown(grace=0)
        other.shutdown(grace=0)
    assert before is not None
    assert after is not None
    # Submitted on one node, counted in the other node's samples.
    assert after.submitted - before.submitted == 2
    assert other.counters()["submitted"] == 0


def test_the_history_is_in_the_openapi_document() -> None:
    document = openapi_document(build_config())
    operation = document["paths"]["/stats/history"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StatsHistory"
    }
    assert document["paths"]["/ui"]["get"]["security"] == []
    assert "StatsHistory" in document["components"]["schemas"]
