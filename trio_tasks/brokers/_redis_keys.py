"""Every Redis key and channel name of the Redis broker, built once per namespace.

All names start with ``tt:{<namespace>}:``. The braces are a Redis Cluster hash tag: every key
of one namespace hashes to the same slot, so the Lua functions, which touch several of them at
once, are valid on a cluster too. ``docs/redis.md`` documents the layout.
"""

from __future__ import annotations

import re

import attrs

from .._job import Priority

#: The Lua library (``#!lua name=...`` in ``_redis.lua``) and the prefix of its functions.
#: Both change together whenever the functions change incompatibly, so nodes of two versions
#: sharing one Redis never call each other's code.
LIBRARY_NAME = "trio_tasks_8"
FUNCTION_PREFIX = "tt8_"
#: The library's version, in every node's registry entry (``library``; entries without it are
#: of a node older than version 8).
LIBRARY_VERSION = 8

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
    nodes: str
    #: Hash id -> bytes of each finished job, and their sum (``RESULT_MAX_BYTES``).
    sizes: str
    finished_bytes: str
    #: Per-type limits: type (JSON) -> ``"concurrency,count,period"``; jobs running per
    #: limited type; when a rate lets a held job of a type start (``_redis.lua``).
    limits: str
    limrun: str
    limdue: str
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
        nodes = prefix + "nodes"
        sizes = prefix + "sizes"
        finished_bytes = prefix + "finished_bytes"
        limits, limrun, limdue = prefix + "limits", prefix + "limrun", prefix + "limdue"
        # The order _redis.lua expects: q:1..q:4, then these.
        script_keys = (
            *queues,
            *named.values(),
            seq,
            nodes,
            sizes,
            finished_bytes,
            limits,
            limrun,
            limdue,
        )
        return cls(
            namespace=namespace,
            prefix=prefix,
            queues=queues,
            seq=seq,
            nodes=nodes,
            sizes=sizes,
            finished_bytes=finished_bytes,
            limits=limits,
            limrun=limrun,
            limdue=limdue,
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

    def held(self, type_json: str) -> str:
        """The zset of the jobs of one limited type (its JSON form) held back by a limit."""
        return f"{self.prefix}held:{type_json}"

    def quarantine(self, job_id: str) -> str:
        """Where the raw record of a job that did not decode is kept (``_redis.lua``:
        ``quarantine``)."""
        return f"{self.prefix}quarantine:{job_id}"

    def node(self, node_id: str) -> str:
        """The registry entry of one node (JSON, expiring after three missed heartbeats)."""
        return f"{self.prefix}node:{node_id}"

    @property
    def schedules(self) -> str:
        """The hash of periodic jobs' shared state: ``paused:<name>`` (``1`` or ``0``) and
        ``tick:<name>`` (JSON ``[tick, last job id]``)."""
        return f"{self.prefix}schedules"
