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
from ._routes import routes
from ._state import ApiState


def create_app(processor: Processor, config: Config | None = None) -> QuartTrio:
    """Return the Quart-Trio app serving the HTTP API of ``processor``.

    ``config`` (default: the processor's) gives the request body size limit. The app's
    :class:`ApiState` is ``app.extensions["trio_tasks"]``. Serve it with
    :func:`trio_tasks.serve`, or use ``app.test_client()`` in tests.
    """
    config = config or processor.config
    app = QuartTrio(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_size
    app.extensions["trio_tasks"] = ApiState(processor, config)
    app.register_blueprint(routes)
    register_error_handlers(app, config.max_body_size)
    return app
