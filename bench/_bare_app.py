"""The stack's ceiling: a bare Quart-Trio app on hypercorn answering a constant 202.

``python -m bench._bare_app PORT [idle-timer]``. Plain, hypercorn's keep-alive timer is a task
started each time a connection turns idle, and quart-trio cancels it at birth (idle
connections are never closed): the plain app is the stack's ceiling without a working timer.
With ``idle-timer``, hypercorn is patched as ``trio-tasks serve`` patches it
(:func:`trio_tasks._hypercorn.install`: one lazy timer per connection, the connection limit,
reason phrases): the ceiling of the stack that closes idle connections.
"""

from __future__ import annotations

import sys

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio

app = QuartTrio(__name__)


@app.post("/jobs")
async def submit() -> tuple[dict[str, str], int]:
    return {"job_id": "00000000-0000-0000-0000-000000000000", "status": "submitted"}, 202


@app.post("/jobs/batch")
async def submit_batch() -> tuple[dict[str, object], int]:
    return {"jobs": []}, 202


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "healthy"}


def main() -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{sys.argv[1]}"]
    config.accesslog = None
    config.errorlog = None
    if sys.argv[2:] == ["idle-timer"]:
        from trio_tasks._hypercorn import install

        install()
    trio.run(serve, app, config)


if __name__ == "__main__":
    main()
