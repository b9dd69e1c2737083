"""The client commands of ``trio-tasks``: ``submit``, ``status`` and ``stats`` talk to a running
server over HTTP with the standard library, sending ``--token`` as a bearer token."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

#: Where client commands find the server unless ``--url`` or ``TRIO_TASKS_URL`` says otherwise.
DEFAULT_URL = "http://127.0.0.1:8080"
_FINAL = frozenset({"completed", "failed", "cancelled"})
#: Seconds of each long-poll of ``submit --wait``.
_WAIT_STEP = "30s"


class UsageError(Exception):
    """Bad flags, configuration or arguments: one line on stderr, exit status 2."""


class ClientError(Exception):
    """A client command failed (unreachable server, error answer): exit status 1."""


def add_url(parser: argparse.ArgumentParser) -> None:
    """Add ``--url`` and ``--token`` (defaults from the environment) to a client command."""
    parser.add_argument(
        "--url",
        default=os.environ.get("TRIO_TASKS_URL") or DEFAULT_URL,
        help=f"the server (default: $TRIO_TASKS_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("TRIO_TASKS_TOKEN") or None,
        help="the API token the server asks for (default: $TRIO_TASKS_TOKEN); prefer the "
        "variable: a flag shows in the process list",
    )


def submit(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"type": args.type}
    if args.payload is not None:
        try:
            payload = json.loads(args.payload)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--payload: malformed JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise UsageError(f"--payload: expected a JSON object, got {args.payload!r}")
        body["payload"] = payload
    for name in ("priority", "timeout", "delay", "job_id"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    if args.retries is not None:
        if not args.retries.strip().isdigit():
            raise UsageError(f"--retries: expected an integer >= 0, got {args.retries!r}")
        body["retries"] = int(args.retries)
    answer = _call(args, "POST", "/jobs", body)
    if not args.wait:
        _print(answer)
        return 0
    job_path = f"/jobs/{quote(answer['job_id'], safe='')}"
    while True:
        job = _call(args, "GET", f"{job_path}?{urlencode({'wait': _WAIT_STEP})}")
        if job.get("status") in _FINAL:
            _print(job)
            return 0 if job["status"] == "completed" else 1


def status(args: argparse.Namespace) -> int:
    _print(_call(args, "GET", f"/jobs/{quote(args.job_id, safe='')}"))
    return 0


def stats(args: argparse.Namespace) -> int:
    _print(_call(args, "GET", "/stats"))
    return 0


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    base: str = args.url
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"--url={base!r}: expected http://host:port or https://host:port")
    url = base.rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if args.token:
        request.add_header("Authorization", f"Bearer {args.token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        # Long-polls last up to 30s; leave them room.
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise ClientError(f"{method} {path}: HTTP {err.code}: {_error_text(err.read())}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ClientError(f"cannot reach {base}: {reason}") from None
    except json.JSONDecodeError:
        raise ClientError(f"{method} {path}: the answer is not JSON") from None


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"])
    except (ValueError, KeyError, TypeError):
        return raw.decode("utf-8", "replace").strip() or "(no message)"


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2))


def schedules(args: argparse.Namespace) -> int:
    """Print ``GET /schedules`` as a table, one schedule a line."""
    rows = [("NAME", "EXPRESSION", "TIMEZONE", "NEXT RUN", "PAUSED", "LAST JOB")]
    for entry in _call(args, "GET", "/schedules")["schedules"]:
        rows.append(
            (
                str(entry["name"]),
                str(entry["expression"]),
                str(entry["timezone"]),
                str(entry["next_run"]),
                "yes" if entry["paused"] else "no",
                str(entry["last_job_id"] or "-"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]))
    return 0
