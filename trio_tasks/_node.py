"""Running a node: a processor, optionally its HTTP API, and the signal handling of SPEC §9.

:func:`run_node` is ``trio-tasks serve`` / ``trio-tasks worker`` without the command line. The
HTTP stack (Quart, hypercorn) is imported only when the node serves HTTP: a worker starts in a
fraction of the time.
"""

from __future__ import annotations

import importlib
import signal
from typing import Any

import trio

from ._config import Config
from ._durations import format_duration
from ._json_log import flush_logs_periodically
from ._log import node_logger
from ._processor import Processor
from ._secrets import redact_url

__all__ = ["run_node"]


async def run_node(
    processor: Processor,
    *,
    http: bool = True,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``processor`` (and its HTTP API when ``http``) until a signal stops it.

    The first SIGINT or SIGTERM starts a graceful shutdown (see :meth:`Processor.shutdown`):
    the API answers 503 to submissions and ``shutting_down`` on ``/health`` while running
    jobs get ``shutdown_timeout`` to finish; queued jobs are abandoned (and logged). A second
    signal cancels the running jobs at once. Returns once everything has stopped.
    ``task_status.started()`` receives the URLs the API listens on (none without ``http``).

    Configure logging first (the processor decides at construction what it logs).

    Raises:
        OSError: the HTTP address cannot be listened on.
    """
    log = node_logger()
    config = processor.config
    registry = processor.registry
    # Opened first, so that a signal arriving during start-up is handled like any other.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as outer:
            outer.start_soon(_watch_signals, signals, processor, config, log)
            # Lines below warning are flushed every 50 ms rather than one write per line.
            outer.start_soon(flush_logs_periodically)
            async with trio.open_nursery() as node:
                await node.start(processor.run)
                urls: list[str] = []
                if http:
                    # The HTTP stack, for nodes that serve it: ~0.2 s of imports, in a thread so
                    # that the loop goes on meanwhile (the watchdog took it for a blocked loop).
                    await trio.to_thread.run_sync(
                        importlib.import_module,
                        f"{__package__}._serve",
                        limiter=trio.CapacityLimiter(1),  # not the handlers' threads
                    )
                    from ._serve import serve

                    urls = await node.start(serve, processor, config)
                log.info(
                    "trio-tasks started",
                    mode="serve" if http else "worker",
                    workers=config.workers,
                    max_concurrency=config.max_concurrency,
                    broker=redact_url(config.broker_url),
                    job_types=registry.names(),
                    urls=urls,
                )
                task_status.started(urls)
            # Processor and HTTP server are done: the signal watcher is all that is left.
            outer.cancel_scope.cancel()
    log.info("trio-tasks stopped", abandoned=len(processor.abandoned))


async def _watch_signals(signals: Any, processor: Processor, config: Config, log: Any) -> None:
    received = 0
    async for signum in signals:
        received += 1
        name = signal.Signals(signum).name
        if received == 1:
            log.info(
                "shutdown requested",
                signal=name,
                grace=format_duration(config.shutdown_timeout),
            )
            processor.shutdown()
        else:
            log.warning("second signal: cancelling running jobs now", signal=name)
            processor.shutdown(grace=0)
