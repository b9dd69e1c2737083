""":func:`open_processor`: a processor for the duration of an ``async with`` block."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._config import Config, build_config
from ._processor import Processor
from ._registry import TaskRegistry
from .brokers._base import Broker

Duration = str | float


@asynccontextmanager
async def open_processor(
    registry: TaskRegistry,
    *,
    config: Config | None = None,
    broker: Broker | str | None = None,
    workers: int | None = None,
    max_concurrency: int | None = None,
    job_timeout: Duration | None = None,
    retry_attempts: int | None = None,
    retry_delay: Duration | None = None,
    retry_max_delay: Duration | None = None,
    shutdown_timeout: Duration | None = None,
    result_ttl: Duration | None = None,
    result_max_jobs: int | None = None,
    failed_ttl: Duration | None = None,
    loop_block_warning: Duration | None = None,
    priority_aging: Duration | None = None,
    logger: Any = None,
    rng: random.Random | None = None,
) -> AsyncIterator[Processor]:
    """Run a :class:`Processor` for the duration of an ``async with`` block.

    The settings are :class:`Config` fields (durations accept Go syntax such as ``"30s"``, or
    seconds); ``None`` keeps the value of ``config`` (default: all defaults). ``broker`` is a
    broker object (``MemoryBroker``, ``RedisBroker``) or a URL (``memory://``,
    ``redis://host:port/db``). ``workers=0`` makes a pure producer. ``priority_aging`` (off by
    default) takes a job that has waited that long as one priority level higher, and so on
    per period (see ``docs/scheduling.md``).

    Leaving the block normally drains gracefully (see :meth:`Processor.shutdown`): jobs still
    queued in memory are abandoned and listed in ``processor.abandoned``. Leaving it with an
    exception cancels the workers at once.

    Raises:
        InvalidValue: a bad setting or broker URL.
    """
    settings: dict[str, Any] = {
        "workers": workers,
        "max_concurrency": max_concurrency,
        "job_timeout": job_timeout,
        "retry_attempts": retry_attempts,
        "retry_delay": retry_delay,
        "retry_max_delay": retry_max_delay,
        "shutdown_timeout": shutdown_timeout,
        "result_ttl": result_ttl,
        "result_max_jobs": result_max_jobs,
        "failed_ttl": failed_ttl,
        "loop_block_warning": loop_block_warning,
        "priority_aging": priority_aging,
    }
    if isinstance(broker, str):
        settings["broker_url"] = broker
        broker = None
    cfg = build_config(config, **settings)
    processor = Processor(registry, cfg, broker=broker, logger=logger, rng=rng)
    async with trio.open_nursery() as nursery:
        await nursery.start(processor.run)
        try:
            yield processor
        except BaseException:
            processor.shutdown(grace=0)
            raise
        processor.shutdown()
