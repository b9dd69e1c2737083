"""Every Redis key and channel name of the Redis broker, built once per namespace.

All names start with ``tt:{<namespace>}:``. The braces are a Redis Cluster hash tag: every key
of one namespace hashes to the same slot, so the Lua functions, which touch several of them at
once, are valid on a cluster too. ``docs/redis.md`` documents the layout.
"""

from __future__ import annotations

import re

import attrs

from .._job import Priority

#: The fields of a job's hash that hold its record (:func:`~trio_tasks._job.job_to_record`),
#: in the order the Lua functions return them (``FIELDS`` in ``_redis.lua``).
RECORD_FIELDS: tuple[str, ...] = (
    "v",
    "id",
    "type",
    "priority",
    "payload",
    "status",
    "attempts",
    "max_attempts",
    "timeout",
    "created_at",
    "run_at",
    "started_at",
    "completed_at",
    "worker_id",
    "result",
    "error",
    "progress",
)

#: The Lua library (``#!lua name=...`` in ``_redis.lua``) and the prefix of its functions.
#: Both change together whenever the functions change incompatibly, so nodes of two versions
#: sharing one Redis never call each other's code.
LIBRARY_NAME = "trio_tasks_3"
FUNCTION_PREFIX = "tt3_"

_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def valid_namespace(namespace: str) -> bool:
    """Whether ``namespace`` can name a key space (letters, digits, ``_.-``; 1-64 chars)."""
    return _NAMESPACE.fullmatch(namespace) is not None


@attrs.frozen
class RedisKeys:
    """The names for one namespace. ``script_keys`` is the KEYS list every Lua function gets."""

    namespace: str
    prefix: str
    queues: tuple[str, str, str, str]
    scheduled: str
    running: str
    finished: str
    index: str
    wake: str
    stats: str
    waiters: str
    seq: str
    cancel_channel: str
    done_channel: str
    script_keys: tuple[str, ...]

    @classmethod
    def for_namespace(cls, namespace: str = "default") -> RedisKeys:
        """Build the names of ``namespace``."""
        prefix = f"tt:{{{namespace}}}:"
        queues = (
            f"{prefix}q:{int(Priority.LOW)}",
            f"{prefix}q:{int(Priority.NORMAL)}",
            f"{prefix}q:{int(Priority.HIGH)}",
            f"{prefix}q:{int(Priority.URGENT)}",
        )
        named = {
            name: prefix + name
            for name in ("scheduled", "running", "finished", "index", "wake", "stats", "waiters")
        }
        seq = prefix + "seq"
        # The order _redis.lua expects: q:1..q:4, then these.
        script_keys = (*queues, *named.values(), seq)
        return cls(
            namespace=namespace,
            prefix=prefix,
            queues=queues,
            seq=seq,
            cancel_channel=prefix + "cancel",
            done_channel=prefix + "done",
            script_keys=script_keys,
            **named,
        )

    def job(self, job_id: str) -> str:
        """The hash holding one job's record."""
        return f"{self.prefix}job:{job_id}"

    def queue(self, priority: Priority) -> str:
        """The list of pending ids of ``priority``."""
        return self.queues[int(priority) - 1]
