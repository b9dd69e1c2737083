"""The Quart-Trio app of a processor: the routes of :mod:`._routes` and the JSON error
handlers of :mod:`._errors`, with the processor reachable as ``app.extensions["trio_tasks"]``.

The seed's endpoints (``/health``, ``/stats``, ``POST /jobs``, ``/workers``) answer the seed's
fields exactly, with extra fields beside them; the others (JSON bodies, batches, lookups,
listing, cancellation, ``/metrics``) are documented in ``docs/api.md``.
"""

from __future__ import annotations

from quart_trio import QuartTrio

from .._config import Config
from .._processor import Processor
from ._errors import register_error_handlers
from ._events import events, streams
from ._guard import guarded
from ._history import HISTORY_KEY, History
from ._routes import routes
from ._state import ApiState
from ._ui import ui

#: Seconds a request body may take to arrive in full.
BODY_TIMEOUT = 30


def create_app(processor: Processor, config: Config | None = None) -> QuartTrio:
    """Return the Quart-Trio app serving the HTTP API of ``processor``.

    ``config`` (default: the processor's) gives the request body size limit. The app's
    :class:`ApiState` is ``app.extensions["trio_tasks"]``. Serve it with
    :func:`trio_tasks.serve`, or use ``app.test_client()`` in tests.
    """
    config = config or processor.config
    app = QuartTrio(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_size
    # A body that trickles in (a byte every few seconds) is cut off with a 408.
    app.config["BODY_TIMEOUT"] = BODY_TIMEOUT
    # "//jobs" or "/jobs/" are not redirected (werkzeug's 308 answers an HTML page): they are
    # matched as written, so they are 404 JSON, or the route itself.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.extensions["trio_tasks"] = ApiState(processor, config)
    app.register_blueprint(routes)
    # The dashboard (/ui) and the counters' history its chart draws (/stats/history).
    app.extensions[HISTORY_KEY] = History(processor)
    app.register_blueprint(ui)
    app.register_blueprint(events)  # the event streams (/events, /jobs/{id}/events)
    register_error_handlers(app, config.max_body_size)
    app.asgi_app = streams(app.asgi_app)  # type: ignore[method-assign]
    # Tokens, allowed hosts and origins are checked before the app sees the request.
    app.asgi_app = guarded(app.asgi_app, config)  # type: ignore[method-assign]
    return app
