"""The systems compared: how each one's worker is started, and where it leaves its defaults.

Stdlib only: the harness reads this table without importing any peer. A worker reads the Redis
URL and its concurrency from ``BENCH_PEERS_URL`` and ``BENCH_PEERS_CONCURRENCY`` (set by the
harness), because the peers' worker commands load a module-level app object.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field


@dataclass(frozen=True)
class System:
    """One system: its client module and its worker command."""

    #: The name in the table and on the command line (``--only``).
    name: str
    #: ``bench.peers.<module>``: the client side (see :mod:`bench.peers._client`).
    module: str
    #: The worker command after ``python``; ``{c}`` is replaced by the concurrency.
    worker: tuple[str, ...]
    #: Every setting that differs from the system's defaults, and why.
    deviations: tuple[str, ...] = field(default=())
    #: The environment variable naming another interpreter for this system (a peer whose
    #: dependencies conflict with the others' lives in a virtualenv of its own).
    python_env: str = ""

    def python(self) -> str:
        """The interpreter that runs this system's client and worker."""
        override = os.environ.get(self.python_env, "") if self.python_env else ""
        return override or sys.executable

    def worker_argv(self, concurrency: int) -> list[str]:
        """The worker's command line."""
        return [self.python(), *(part.replace("{c}", str(concurrency)) for part in self.worker)]


SYSTEMS: tuple[System, ...] = (
    System(
        "trio-tasks",
        "_trio_tasks",
        ("-m", "trio_tasks", "worker"),
        (
            "WORKER_NUM_WORKERS = the scenario's concurrency (default 10). Everything else at "
            "its defaults, on the producer and the worker (logging at info included).",
        ),
    ),
    System(
        "taskiq",
        "_taskiq",
        (
            "-m",
            "taskiq",
            "worker",
            "bench.peers._taskiq:broker",
            "--workers",
            "1",
            "--max-async-tasks",
            "{c}",
        ),
        (
            "RedisStreamBroker with RedisAsyncResultBackend (the taskiq-redis README's setup).",
            "--workers 1 (default 2 processes): one worker process for every system.",
            "--max-async-tasks = the scenario's concurrency (default 100).",
            "The caller waits with wait_result(check_interval=0.001) (default 0.2 s, a sleep "
            "between polls that would measure the caller's patience, not the system).",
        ),
    ),
    System(
        "dramatiq",
        "_dramatiq",
        ("-m", "dramatiq", "bench.peers._dramatiq", "--processes", "1", "--threads", "{c}"),
        (
            "RedisBroker with the Results middleware on a RedisBackend (results are off by "
            "default; the caller needs them).",
            "--processes 1 (default: one per CPU): one worker process for every system.",
            "--threads = the scenario's concurrency (default 8). Actors are plain functions; "
            "the 10 ms job is time.sleep(0.01) in a worker thread (Dramatiq's concurrency is "
            "threads).",
        ),
    ),
    System(
        "saq",
        "_saq",
        ("-m", "saq", "bench.peers._saq.settings", "--workers", "1"),
        (
            "concurrency = the scenario's concurrency (default 10).",
            "Before queueing, the client sets SAQ's sweep lock (SETEX saq:default:sweep 60), as "
            "a worker that swept within the last minute leaves it: SAQ's worker sweeps its active "
            "list as it starts, concurrently with its first dequeues, and aborts the jobs it "
            "finds there not yet marked active (saq issue #124). With a backlog queued before "
            "the spawn this stranded 5-6 no-op jobs for ~110 s in every drain here.",
            "The caller waits with job.refresh(until_complete=1.0) in a loop (one subscription "
            "may miss a job that finishes before it is active; queue.apply polls every 0.5 s).",
        ),
    ),
    System(
        "arq",
        "_arq",
        ("-m", "arq", "bench.peers._arq.WorkerSettings"),
        (
            "max_jobs = the scenario's concurrency (default 10).",
            "poll_delay = 0.01 s (default 0.5 s): arq's worker polls its queue on a timer and "
            "starts at most max_jobs jobs per poll, so at its default the 10 ms C=10 drain "
            "runs at about 20 jobs/s and the scenarios would not fit the time budget.",
            "The caller waits with job.result(poll_delay=0.001) (default 0.5 s).",
            "Installed in a virtualenv of its own (BENCH_PEERS_ARQ_PYTHON): arq 0.28 requires "
            "redis-py < 6, Celery 5.7 (kombu) >= 6.4 and taskiq-redis 1.2 >= 8.",
        ),
        python_env="BENCH_PEERS_ARQ_PYTHON",
    ),
    System(
        "streaq",
        "_streaq",
        ("-m", "streaq", "run", "bench.peers._streaq:worker"),
        ("concurrency = the scenario's concurrency (default 16).",),
    ),
    System(
        "celery",
        "_celery",
        (
            "-m",
            "celery",
            "-A",
            "bench.peers._celery",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "{c}",
        ),
        (
            "Redis as broker and result backend (no result backend by default; the caller "
            "needs results).",
            "--pool threads (default prefork: one process per slot): one worker process for "
            "every system, and 100 slots at C=100.",
            "--concurrency = the scenario's concurrency (default: number of CPUs). The 10 ms "
            "job is time.sleep(0.01) in a pool thread (Celery tasks are synchronous).",
        ),
    ),
)

BY_NAME = {system.name: system for system in SYSTEMS}
