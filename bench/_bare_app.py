"""The stack's ceiling: a bare Quart-Trio app on hypercorn answering a constant 202.

``python -m bench._bare_app PORT [idle-timer]``. With ``idle-timer``, the app is wrapped like
``trio-tasks serve`` wraps its own, so that hypercorn's keep-alive idle timer really runs (without
the wrapper quart-trio cancels it at birth: idle connections are never closed). The timer is a
task started per request, so this is the ceiling of the stack when it closes idle connections.
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
    served: object = app
    if sys.argv[2:] == ["idle-timer"]:
        from trio_tasks._serve import _KeepIdleTimerAlive

        served = _KeepIdleTimerAlive(app)
    trio.run(serve, served, config)


if __name__ == "__main__":
    main()
