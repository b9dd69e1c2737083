"""trio-tasks: a task processing system on Trio's structured concurrency.

Jobs have a type, a JSON payload and a priority; workers run them under cancel scopes that
enforce timeouts, retry failures with backoff and keep results and statistics. See
``docs/architecture.md`` for the design and ``examples/embed.py`` for a tour.
"""

from contextlib import suppress as _suppress
from typing import TYPE_CHECKING, Any

from ._config import Config as Config
from ._context import JobContext as JobContext
from ._demo import demo_registry as demo_registry
from ._durations import format_duration as format_duration
from ._durations import parse_duration as parse_duration
from ._errors import BrokerUnavailable as BrokerUnavailable
from ._errors import InvalidValue as InvalidValue
from ._errors import JobAlreadyFinished as JobAlreadyFinished
from ._errors import JobNotFound as JobNotFound
from ._errors import JobNotRetryable as JobNotRetryable
from ._errors import PermanentError as PermanentError
from ._errors import QueueFull as QueueFull
from ._errors import Retry as Retry
from ._errors import ShuttingDown as ShuttingDown
from ._errors import TrioTasksError as TrioTasksError
from ._errors import UnknownJobType as UnknownJobType
from ._events import EventHub as EventHub
from ._events import JobEvent as JobEvent
from ._events import Subscription as Subscription
from ._isolation import ProcessContext as ProcessContext
from ._job import Job as Job
from ._job import JobError as JobError
from ._job import JobStatus as JobStatus
from ._job import Priority as Priority
from ._job import job_to_json as job_to_json
from ._logging import configure_logging as configure_logging
from ._node import run_node as run_node
from ._open_processor import open_processor as open_processor
from ._precise_clock import PreciseClock as PreciseClock
from ._processor import Processor as Processor
from ._registry import TaskRegistry as TaskRegistry
from ._registry import TaskSpec as TaskSpec
from ._request import JobRequest as JobRequest
from ._stats import ClusterView as ClusterView
from ._stats import NodeView as NodeView
from ._stats import Percentiles as Percentiles
from ._stats import ProcessorStats as ProcessorStats
from ._stats import WorkerStats as WorkerStats
from .brokers._base import Admission as Admission

if TYPE_CHECKING:
    from ._serve import serve as serve
    from .brokers._redis import RedisBroker as RedisBroker

__version__ = "0.1.0"

__all__ = [
    "Admission",
    "BrokerUnavailable",
    "ClusterView",
    "Config",
    "EventHub",
    "InvalidValue",
    "Job",
    "JobAlreadyFinished",
    "JobContext",
    "JobError",
    "JobEvent",
    "JobNotFound",
    "JobNotRetryable",
    "JobRequest",
    "JobStatus",
    "NodeView",
    "Percentiles",
    "PermanentError",
    "PreciseClock",
    "Priority",
    "ProcessContext",
    "Processor",
    "ProcessorStats",
    "QueueFull",
    "RedisBroker",
    "Retry",
    "ShuttingDown",
    "Subscription",
    "TaskRegistry",
    "TaskSpec",
    "TrioTasksError",
    "UnknownJobType",
    "WorkerStats",
    "configure_logging",
    "demo_registry",
    "format_duration",
    "job_to_json",
    "open_processor",
    "parse_duration",
    "run_node",
    "serve",
]


#: Imported when first asked for: the Redis broker (coredis) and the HTTP API (Quart,
#: hypercorn) cost a worker or an embedding program start-up time it may not need.
_LAZY = {"RedisBroker": ".brokers._redis", "serve": "._serve"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        value = getattr(importlib.import_module(module, __name__), name)
        if name == "serve":
            value.__module__ = "trio_tasks"
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trio_tasks' has no attribute {name!r}")


# Tracebacks and reprs say trio_tasks.X, not trio_tasks._module.X.
for _name in __all__:
    if _name in _LAZY:
        continue
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("trio_tasks."):
        with _suppress(AttributeError, TypeError):  # builtins and frozen types refuse it
            _obj.__module__ = __name__
del _name, _obj
