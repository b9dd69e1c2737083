"""The web dashboard: ``GET /ui`` and its assets, and ``GET /stats/history`` for its chart.

The dashboard is a few static files in the package (``trio_tasks/http/ui/``): no build step,
nothing fetched from elsewhere. They are read once per process, at the first request for one,
and answered from memory with an ``ETag`` (``Cache-Control: no-cache``: a browser revalidates
and gets a 304 while the package is unchanged) and a strict Content-Security-Policy: scripts
and styles from these files only, no inline script, requests to this origin only. The assets
hold no secrets, so the guard lets them through without a token; every API call the page makes
carries it.
``docs/dashboard.md`` describes the pages.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from quart import Blueprint, Response, current_app, request

from ._errors import error_response, json_response
from ._history import HISTORY_KEY, History

ui = Blueprint("trio_tasks_ui", __name__)

#: The path prefix of the dashboard: open without a token (see ``_guard``).
UI_PATH = "/ui"

#: What the dashboard may load and reach: this origin's files and API, nothing inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class Asset:
    """One file of the dashboard, as answered."""

    __slots__ = ("body", "content_type", "etag")

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def load_assets() -> dict[str, Asset]:
    """The files of ``trio_tasks/http/ui`` by name (flat: no subfolders), those of a known
    content type only."""
    assets: dict[str, Asset] = {}
    for entry in resources.files(__package__ or "trio_tasks.http").joinpath("ui").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _CONTENT_TYPES:
            assets[entry.name] = Asset(entry.read_bytes(), _CONTENT_TYPES[suffix])
    return assets


#: Loaded once per process: the files do not change under a running server.
_ASSETS: dict[str, Asset] = {}


def _assets() -> dict[str, Asset]:
    if not _ASSETS:
        _ASSETS.update(load_assets())
    return _ASSETS


@ui.get("/stats/history")
async def stats_history() -> Response:
    history: History = current_app.extensions[HISTORY_KEY]
    return json_response(history.to_json())


@ui.get(UI_PATH)
async def ui_index() -> Response:
    return _answer("index.html")


@ui.get(UI_PATH + "/<name>")
async def ui_asset(name: str) -> Response:
    if name == "":
        return _answer("index.html")
    return _answer(name)


def _answer(name: str) -> Response:
    asset = _assets().get(name)
    if asset is None:
        # Quoted with repr: a name from the URL may hold anything.
        return error_response(404, f"no dashboard file {name[:100]!r}")
    headers = {**_SECURITY_HEADERS, "ETag": asset.etag}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return Response(b"", 304, headers=headers)
    return Response(asset.body, 200, content_type=asset.content_type, headers=headers)
