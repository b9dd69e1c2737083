"""The HTTP API: a Quart-Trio app over a :class:`~trio_tasks.Processor` (SPEC §6).

Most programs want :func:`trio_tasks.serve`; :func:`create_app` gives the bare app, e.g. for
``app.test_client()`` or to mount it in a larger ASGI application.
"""

from ._app import create_app as create_app
from ._metrics import Metrics as Metrics
from ._state import ApiState as ApiState

__all__ = ["ApiState", "Metrics", "create_app"]
