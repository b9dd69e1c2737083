"""The dashboard in a real browser: headless Chromium from the distribution's packages, driven
by Playwright, against a real ``trio-tasks serve`` (and a two-node Redis cluster).

Jobs come from ``tests/dashboard_app.py``: ``steps`` reports progress one step at a time, each
step waiting for a file the test creates, so the test moves the job on itself; ``hold`` runs
until cancelled; ``hostile`` fails with markup. Waiting is Playwright's (``expect``), never a
sleep. Every test fails if the page logs an error or throws. ``-m 'not browser'`` leaves them
out; CI runs them (``.ci/run`` installs chromium when it is missing).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _server import ROOT, ServerProcess
from dashboard_app import HOSTILE
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
TESTS = Path(__file__).parent
IMAGES = ROOT / "docs" / "images"
TOKEN = "dashboard-browser-token-0123456789"
#: How long the page may take to show what the server did: "within a second".
PROMPT = 1000


#: Where the ``steps`` jobs of every server look for their gates (see :func:`step`).
GATES = Path(tempfile.mkdtemp(prefix="dashboard-gates-"))


def app_env(**env: str) -> dict[str, str]:
    pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    return {
        "TASKS_APP": "dashboard_app:registry",
        "PYTHONPATH": pythonpath,
        "DASHBOARD_GATES": str(GATES),
        **env,
    }


def call(url: str, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    """One API call; the decoded JSON answer."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def submit(url: str, token: str | None = None, **job: Any) -> str:
    job_id: str = call(url, "POST", "/jobs", job, token)["job_id"]
    return job_id


def server_errors(node: ServerProcess) -> list[dict[str, Any]]:
    """The server's error log lines, but for the jobs failing on purpose."""
    return [
        r
        for r in node.records
        if r["level"] in ("error", "critical") and r.get("msg") != "job failed"
    ]


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _remove_gates() -> Iterator[None]:
    yield
    shutil.rmtree(GATES, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with ServerProcess(env=app_env(WORKER_NUM_WORKERS="3")) as node:
        yield node.wait_ready()
        # Nothing the pages did made the server log an error (the failing jobs aside).
        assert server_errors(node) == []


class Console:
    """What the page logged as an error, or threw."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._message)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _message(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"{message.type}: {message.text}")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    tab = context.new_page()
    console = Console(tab)
    yield tab
    context.close()
    assert console.errors == []


def open_live(page: Page, url: str, route: str = "") -> None:
    """Open the dashboard at ``route`` and wait until its event stream is connected."""
    page.goto(f"{url}/ui{route}")
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=5000)


def step(job_id: str, number: int) -> None:
    """Let the gated ``steps`` job ``job_id`` do its step ``number``."""
    (GATES / f"{job_id}.{number}").touch()


# -- the pages -------------------------------------------------------------------------------


def test_a_submitted_job_appears_at_once_and_its_progress_moves(server: str, page: Page) -> None:
    encodings: list[str | None] = []
    page.on(
        "response",
        lambda r: (
            encodings.append(r.headers.get("content-encoding"))
            if r.url.endswith("/events")
            else None
        ),
    )
    open_live(page, server, "#/jobs")
    # The browser takes the stream compressed (and the page works from it).
    assert encodings == ["deflate"]
    job_id = submit(server, type="steps", payload={"steps": 4, "gated": True})
    row = page.locator(f'#jobs tr[data-job="{job_id}"]')
    expect(row).to_be_visible(timeout=PROMPT)
    expect(row.locator(".status")).to_have_text("running", timeout=PROMPT)
    # The table follows the progress events too.
    step(job_id, 1)
    expect(row.locator(".progress-label")).to_have_text("25%", timeout=PROMPT)

    row.locator("a").click()
    expect(page.locator("#job-id")).to_have_text(job_id)
    label = page.locator("#job-progress .progress-label")
    bar = page.locator("#job-progress progress")
    expect(label).to_have_text("25%")
    for number, shown in ((2, "50%"), (3, "75%")):
        step(job_id, number)
        expect(label).to_have_text(shown, timeout=PROMPT)
    expect(bar).to_have_js_property("value", 0.75)
    step(job_id, 4)
    expect(page.locator("#job-status")).to_have_text("completed", timeout=PROMPT)
    expect(page.locator("#result")).to_contain_text('"steps": 4')
    expect(page.locator("#cancel")).to_be_disabled()


def test_cancel_and_retry_from_the_buttons(server: str, page: Page) -> None:
    job_id = submit(server, type="hold")
    open_live(page, server, f"#/jobs/{job_id}")
    status = page.locator("#job-status")
    expect(status).to_have_text("running", timeout=5000)
    expect(page.locator("#retry")).to_be_disabled()

    page.locator("#cancel").click()
    expect(status).to_have_text("cancelled", timeout=5000)
    expect(page.locator("#notice")).to_contain_text("Job cancel")
    expect(page.locator("#cancel")).to_be_disabled()

    page.locator("#retry").click()
    expect(status).to_have_text("running", timeout=5000)
    expect(page.locator("#notice")).to_have_text("Job queued again.")
    # The cancellation is kept among the earlier errors.
    expect(page.locator("#earlier-errors tbody tr")).to_have_count(1)
    expect(page.locator("#earlier-errors")).to_contain_text("Cancelled")
    assert call(server, "GET", f"/jobs/{job_id}")["status"] == "running"

    page.locator("#cancel").click()
    expect(status).to_have_text("cancelled", timeout=5000)


def test_failed_jobs_are_shown_as_text_and_retried_from_the_list(server: str, page: Page) -> None:
    failed = submit(server, type="hostile", retries=0)
    odd = submit(server, type=HOSTILE, payload={"note": HOSTILE})
    open_live(page, server, "#/failed?type=hostile")
    row = page.locator(f'#failed tr[data-job="{failed}"]')
    expect(row).to_contain_text("ValueError: " + HOSTILE, timeout=5000)

    page.goto(f"{server}/ui#/jobs/{failed}")
    expect(page.locator("#error")).to_have_text("ValueError: " + HOSTILE)
    page.goto(f"{server}/ui#/jobs/{odd}")
    expect(page.locator("#job-status")).to_have_text("completed", timeout=5000)
    expect(page.locator("#job-details dd").first).to_have_text(HOSTILE)
    expect(page.locator("#payload")).to_contain_text(json.dumps(HOSTILE)[1:-1])
    # The markup was text: no element came of it, no handler ran.
    assert page.locator("main img, main script").count() == 0
    assert page.title() == "trio-tasks"

    page.goto(f"{server}/ui#/failed?type=hostile")
    expect(row).to_be_visible()
    page.locator("#retry-all").click()
    expect(page.locator("#notice")).to_have_text("1 job(s) queued again.")
    # Queued again, it fails again: its page shows the earlier error.
    page.goto(f"{server}/ui#/jobs/{failed}")
    expect(page.locator("#earlier-errors tbody tr")).to_have_count(1, timeout=5000)
    expect(page.locator("#job-status")).to_have_text("failed", timeout=5000)


def test_the_overview_shows_the_figures_and_the_workers(server: str, page: Page) -> None:
    job_id = submit(server, type="steps", payload={"steps": 1, "gated": True})
    open_live(page, server)
    expect(page.locator('#by-status [data-card="running"] .card-value')).not_to_have_text("0")
    worker = page.locator("#workers tr", has=page.locator(f'a[href="#/jobs/{job_id}"]'))
    expect(worker).to_contain_text("busy")
    step(job_id, 1)
    expect(page.locator(f'#workers a[href="#/jobs/{job_id}"]')).to_have_count(0, timeout=5000)
    expect(page.locator("#latency")).to_contain_text("queue wait")
    expect(page.locator("#history figure")).to_be_visible()


def test_the_jobs_table_filters_and_searches(server: str, page: Page) -> None:
    wanted = submit(server, type="steps", priority="urgent", payload={"steps": 0})
    other = submit(server, type="steps", priority="low", payload={"steps": 0})
    open_live(page, server, "#/jobs?type=steps&priority=urgent")
    expect(page.locator(f'#jobs tr[data-job="{wanted}"]')).to_be_visible()
    expect(page.locator(f'#jobs tr[data-job="{other}"]')).to_have_count(0)
    page.locator('#job-filters input[name="q"]').fill(other)
    page.locator("#job-filters button").click()
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    expect(page.locator(f'#jobs tr[data-job="{other}"]')).to_be_visible()
    assert re.search(r"q=", page.url)


def test_a_busy_node_s_jobs_table_is_read_again(page: Page) -> None:
    # A node of its own: 300 jobs of one batch change in one tick, more than a tick takes
    # (2,000 changes a second: 100 in a 50 ms tick). The stream sends the first 100 and a count
    # of the rest; the page reads its list again, so the newest of the batch shows too (it
    # changes no more: only that reading can show it).
    with ServerProcess(env=app_env()) as node:
        url = node.wait_ready()
        open_live(page, url, "#/jobs")
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url) if "/jobs?" in r.url else None)
        batch = [{"type": "steps", "delay": "1h"} for _ in range(300)]
        answer = call(url, "POST", "/jobs/batch", batch)
        newest = answer["jobs"][-1]["job_id"]
        expect(page.locator(f'#jobs tr[data-job="{newest}"]')).to_be_visible(timeout=3000)
        assert requests, "the list was not read again"
        expect(page.locator("#jobs tbody tr")).to_have_count(50)  # one page
        assert server_errors(node) == []
        page.goto("about:blank")  # before the node is killed: its stream would be cut


def test_the_schedules_pause_and_resume(browser: Browser) -> None:
    schedules = ROOT / "examples" / "schedules.toml"
    env = app_env(TASKS_APP="trio_tasks:demo_registry", SCHEDULES_FILE=str(schedules))
    with ServerProcess(env=env) as node:
        url = node.wait_ready()
        names = [s["name"] for s in call(url, "GET", "/schedules")["schedules"]]
        assert names
        context = browser.new_context()
        page = context.new_page()
        console = Console(page)
        open_live(page, url, "#/schedules")
        row = page.locator(f'#schedules tr[data-schedule="{names[0]}"]')
        expect(row).to_have_attribute("data-paused", "false")
        row.locator("button").click()
        expect(row).to_have_attribute("data-paused", "true")
        assert call(url, "GET", "/schedules")["schedules"][0]["paused"] is True
        row.locator("button").click()
        expect(row).to_have_attribute("data-paused", "false")
        context.close()
    assert console.errors == []


# -- the token -------------------------------------------------------------------------------


def test_the_page_asks_for_the_token_and_keeps_it_for_the_session(browser: Browser) -> None:
    with ServerProcess(env=app_env(API_TOKEN=TOKEN)) as node:
        url = node.wait_ready()
        context = browser.new_context()
        page = context.new_page()
        console = Console(page)
        page.goto(f"{url}/ui")
        dialog = page.locator("#token-dialog")
        expect(dialog).to_be_visible()
        # Refused before the token: the 401 answers the browser reports, and nothing else.
        before = list(console.errors)
        assert before
        assert all("401" in line for line in before), before
        page.locator("#token-input").fill("wrong-token")
        page.locator("#token-submit").click()
        expect(page.locator("#token-reason")).to_contain_text("invalid API token")
        page.locator("#token-input").fill(TOKEN)
        page.locator("#token-submit").click()
        expect(dialog).to_be_hidden()
        expect(page.locator("#by-status")).to_be_visible()
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        stored = page.evaluate("() => [sessionStorage.length, localStorage.length]")
        assert stored == [1, 0]
        # Writes carry it too.
        job_id = submit(url, TOKEN, type="hold")
        page.goto(f"{url}/ui#/jobs/{job_id}")
        expect(page.locator("#job-status")).to_have_text("running", timeout=5000)
        page.locator("#cancel").click()
        expect(page.locator("#job-status")).to_have_text("cancelled", timeout=5000)
        # After the token, the only refusals were those of the wrong token.
        refused = console.errors[len(before) :]
        assert all("401" in line for line in refused), refused
        # Another browser session knows no token.
        context.close()
        fresh = browser.new_context()
        other = fresh.new_page()
        other.goto(f"{url}/ui")
        expect(other.locator("#token-dialog")).to_be_visible()
        fresh.close()
    assert console.errors[len(before) :] == refused
    assert server_errors(node) == []


# -- reconnecting ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_page_reconnects_with_backoff_when_the_stream_ends(browser: Browser) -> None:
    port = str(free_port())
    context = browser.new_context()
    page = context.new_page()
    console = Console(page)
    live = page.locator("#live")
    with ServerProcess(env=app_env(SERVER_PORT=port)) as first:
        url = first.wait_ready()
        open_live(page, url, "#/jobs")
        first.send_signal(signal.SIGTERM)
        assert first.wait_exit(30) == 0
    # The stream ended with the server: the page waits 1 s, then (refused) 2 s, and so on.
    expect(live).to_have_text("reconnecting in 1 s")
    expect(live).to_have_text("reconnecting in 2 s", timeout=5000)
    with ServerProcess(env=app_env(SERVER_PORT=port)) as second:
        assert second.wait_ready() == url
        expect(live).to_have_attribute("data-state", "live", timeout=10_000)
        job_id = submit(url, type="steps", payload={"steps": 0})
        expect(page.locator(f'#jobs tr[data-job="{job_id}"]')).to_be_visible(timeout=PROMPT)
        context.close()
    # The browser reports the refused connections while the node was away; nothing else.
    assert console.errors
    assert all("ERR_CONNECTION_REFUSED" in line for line in console.errors), console.errors


# -- screenshots for docs/dashboard.md -------------------------------------------------------


def test_the_screenshots_of_the_docs(browser: Browser, tmp_path: Path) -> None:
    """Takes the screenshots of docs/dashboard.md: into docs/images/ with
    ``TRIO_TASKS_SCREENSHOTS=1`` (to refresh the docs), else into a temporary directory (a test
    run leaves the tree as it was). The overview waits for the server's history to hold two
    samples (one interval, ten seconds), so the chart has bars."""
    images = IMAGES if os.environ.get("TRIO_TASKS_SCREENSHOTS") == "1" else tmp_path
    with ServerProcess(env=app_env(WORKER_NUM_WORKERS="4")) as node:
        url = node.wait_ready()
        for number in range(12):
            submit(url, type="steps", job_id=f"report-{number}", payload={"steps": 0})
        submit(url, type="hostile", job_id="import-7", retries=0)
        invoice = {"steps": 5, "gated": True, "customer": "ACME GmbH", "lines": 212}
        held = submit(url, type="steps", job_id="invoice-2041", payload=invoice)
        for number in (1, 2, 3):
            step(held, number)
        submit(url, type="hold", job_id="export-99")
        context = browser.new_context(viewport={"width": 1100, "height": 900}, color_scheme="light")
        page = context.new_page()
        console = Console(page)
        open_live(page, url)
        expect(page.locator("#history rect.bar").first).to_be_attached(timeout=25_000)
        expect(page.locator('#by-status [data-card="running"] .card-value')).to_have_text("2")
        images.mkdir(exist_ok=True)
        page.screenshot(path=images / "dashboard-overview.png", full_page=True)
        page.set_viewport_size({"width": 1100, "height": 640})
        page.goto(f"{url}/ui#/jobs/{held}")
        expect(page.locator("#job-progress .progress-label")).to_have_text("60%")
        page.screenshot(path=images / "dashboard-job.png", full_page=True)
        context.close()
    assert console.errors == []
    for name in ("dashboard-overview.png", "dashboard-job.png"):
        image = (images / name).read_bytes()
        assert image.startswith(b"\x89PNG\r\n\x1a\n")
        assert 10_000 < len(image) < 200_000


# -- a Redis cluster -------------------------------------------------------------------------


@pytest.mark.redis
def test_one_page_follows_a_two_node_redis_cluster(browser: Browser, redis_url: str) -> None:
    # The page talks to node A, which runs no jobs: what it shows of the job comes from
    # node B, across Redis.
    with (
        ServerProcess(env=app_env(BROKER_URL=redis_url, WORKER_NUM_WORKERS="0")) as front,
        ServerProcess(env=app_env(BROKER_URL=redis_url, WORKER_NUM_WORKERS="2")) as back,
    ):
        url, other = front.wait_ready(20), back.wait_ready(20)
        context = browser.new_context()
        page = context.new_page()
        console = Console(page)
        open_live(page, url, "#/jobs")
        # Node B publishes its events once it sees a node with a client (checked every
        # second, docs/api.md "Live events"): a job every second until one shows that it does.
        for _ in range(10):
            warm_up = submit(other, type="steps", payload={"steps": 1})
            try:
                expect(page.locator(f'#jobs tr[data-job="{warm_up}"]')).to_be_visible(timeout=1500)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("node B never published its events to node A's page")
        job_id = submit(other, type="steps", payload={"steps": 2, "gated": True})
        row = page.locator(f'#jobs tr[data-job="{job_id}"]')
        expect(row).to_be_visible(timeout=PROMPT)
        step(job_id, 1)
        expect(row.locator(".progress-label")).to_have_text("50%", timeout=PROMPT)

        page.goto(f"{url}/ui#/")
        expect(page.locator("#workers .node-row")).to_have_count(2)
        busy = page.locator("#workers tr", has=page.locator(f'a[href="#/jobs/{job_id}"]'))
        expect(busy).to_contain_text("busy")
        page.goto(f"{url}/ui#/jobs/{job_id}")
        expect(page.locator("#job-progress .progress-label")).to_have_text("50%")
        step(job_id, 2)
        expect(page.locator("#job-status")).to_have_text("completed", timeout=PROMPT)
        context.close()
        errors = server_errors(front) + server_errors(back)
    assert console.errors == []
    assert errors == []
