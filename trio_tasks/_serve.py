"""The HTTP API beside a processor: :func:`serve` runs it inside the caller's nursery.

:func:`~trio_tasks.run_node` (in :mod:`._node`) imports this module only for a node with an
HTTP API, so that ``trio-tasks worker`` never imports the HTTP stack.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import structlog
import trio
from hypercorn.trio import serve as hypercorn_serve

from ._config import Config, split_list
from ._hypercorn import HTTP_GRACE, hypercorn_config, install
from ._processor import Processor
from .http import ApiState, create_app
from .http._history import HISTORY_KEY, History

__all__ = ["HTTP_GRACE", "serve"]


async def serve(
    processor: Processor,
    config: Config | None = None,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the HTTP API of ``processor`` on ``config.server_host:config.server_port``.

    Run it in the nursery that runs the processor::

        async with trio.open_nursery() as nursery:
            await nursery.start(processor.run)
            urls = await nursery.start(trio_tasks.serve, processor, config)

    ``config`` defaults to the processor's. ``task_status.started()`` receives the URLs the
    server listens on (useful with port 0).

    The server stops when ``shutdown_trigger()`` returns or when the processor has stopped,
    whichever comes first: while the processor drains, the API keeps answering (``/health``
    says ``shutting_down``, submissions get 503). Requests waiting on a job are answered with
    the job as it is; other in-flight requests get :data:`HTTP_GRACE` seconds.

    Raises:
        OSError: the address cannot be listened on.
    """
    config = config or processor.config
    log = structlog.get_logger("trio_tasks")
    app = create_app(processor, config)
    state: ApiState = app.extensions["trio_tasks"]
    history: History = app.extensions[HISTORY_KEY]

    async def stop_when_done() -> None:
        async with trio.open_nursery() as race:

            async def first(wait: Callable[[], Awaitable[Any]]) -> None:
                await wait()
                race.cancel_scope.cancel()

            race.start_soon(first, processor.wait_stopped)
            if shutdown_trigger is not None:
                race.start_soon(first, shutdown_trigger)
        state.stop_waiting()
        history.stop()

    install()
    hyper = hypercorn_config(config)
    async with trio.open_nursery() as nursery:
        # The dashboard's chart: counters sampled while the server runs, stopped with it.
        nursery.start_soon(history.run)
        urls: list[str] = await nursery.start(
            partial(hypercorn_serve, app, hyper, shutdown_trigger=stop_when_done)
        )
        log.info("http server listening", urls=urls)
        if not split_list(config.api_token) and not is_loopback(config.server_host):
            log.warning(
                "http api open to the network without a token: anyone who can reach it may "
                "submit, read and cancel jobs",
                host=config.server_host,
                hint="set API_TOKEN (docs/security.md), or SERVER_HOST=127.0.0.1",
            )
        task_status.started(urls)
    log.info("http server stopped")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
