"""The client commands of ``trio-tasks``: ``submit``, ``status`` and ``stats`` talk to a running
server over HTTP with the standard library, sending ``--token`` as a bearer token.

``submit --wait`` and ``status --follow`` read the job's event stream (``GET /jobs/{id}/events``)
and show its state and progress on stderr as they change (one line redrawn on a terminal, a
line per event otherwise), then print the final job on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import IO, Any
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
    return _finished(follow(args, answer["job_id"]))


def status(args: argparse.Namespace) -> int:
    if getattr(args, "follow", False):
        return _finished(follow(args, args.job_id))
    _print(_call(args, "GET", f"/jobs/{quote(args.job_id, safe='')}"))
    return 0


def _finished(job: dict[str, Any]) -> int:
    _print(job)
    return 0 if job.get("status") == "completed" else 1


def follow(args: argparse.Namespace, job_id: str, stderr: IO[str] | None = None) -> dict[str, Any]:
    """Follow ``job_id`` to its end through its event stream, showing its state and progress
    on ``stderr``; return the final job. A server without event streams is long-polled.

    Raises:
        ClientError: the server is unreachable, answers an error, or stops before the end.
    """
    out = stderr if stderr is not None else sys.stderr
    show = Progress(out, out.isatty())
    path = f"/jobs/{quote(job_id, safe='')}"
    try:
        response = _open(args, "GET", f"{path}/events", accept="text/event-stream")
    except ClientError as exc:
        if "HTTP 404" not in str(exc):
            raise
        # A server without event streams (or an unknown job: the long-poll says so).
        return _long_poll(args, path)
    job: dict[str, Any] | None = None
    with response:
        for name, data in read_events(response):
            if name == "state":
                job = data
                show.state(data)
            elif name == "progress":
                show.progress(data.get("progress"))
            elif name == "end":
                show.done()
                break
            elif name == "dropped":
                show.done()
                return _long_poll(args, path)  # too slow for the stream: ask for the end
        else:
            show.done()
            raise ClientError(
                f"the server closed the event stream of {job_id!r} before the job ended "
                f"(last state: {job.get('status') if job else 'unknown'})"
            )
    assert job is not None
    return job


def _long_poll(args: argparse.Namespace, path: str) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = _call(args, "GET", f"{path}?{urlencode({'wait': _WAIT_STEP})}")
        if job.get("status") in _FINAL:
            return job


def read_events(lines: Any) -> Iterator[tuple[str, Any]]:
    """``(name, data)`` of each event of a text/event-stream read line by line (bytes);
    comments are skipped, ``data`` is decoded JSON."""
    name, data = "message", ""
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield name, json.loads(data)
            name, data = "message", ""
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


class Progress:
    """The state and progress of a followed job, on ``out``: one line redrawn in place on a
    terminal (``tty``), a line per change otherwise."""

    WIDTH = 30

    def __init__(self, out: IO[str], tty: bool) -> None:
        self.out = out
        self.tty = tty
        self.status = ""
        self.value: Any = None
        self.drawn = False

    def state(self, job: dict[str, Any]) -> None:
        status = str(job.get("status"))
        value = job.get("progress")
        if status == self.status and value == self.value:
            return
        self.status = status
        if not self.tty:
            self.out.write(f"{job.get('id')}: {status}\n")
            self.out.flush()
        self.value = value
        self._draw()

    def progress(self, value: Any) -> None:
        self.value = value
        if not self.tty:
            self.out.write(f"progress: {json.dumps(value)}\n")
            self.out.flush()
        self._draw()

    def done(self) -> None:
        if self.tty and self.drawn:
            self.out.write("\n")
            self.out.flush()
            self.drawn = False

    def _draw(self) -> None:
        if not self.tty:
            return
        self.out.write("\r\x1b[K" + render(self.status, self.value, self.WIDTH))
        self.out.flush()
        self.drawn = True


def render(status: str, value: Any, width: int = Progress.WIDTH) -> str:
    """One line: the status, then a bar and a percentage for a number from 0 to 1, the value
    (JSON) for anything else, nothing without progress."""
    if value is None:
        return status
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        filled = round(value * width)
        return f"{status} [{'#' * filled}{'.' * (width - filled)}] {value * 100:5.1f}%"
    return f"{status} {json.dumps(value)}"


def stats(args: argparse.Namespace) -> int:
    _print(_call(args, "GET", "/stats"))
    return 0


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    with _open(args, method, path, body) as response:
        try:
            return json.loads(response.read())
        except OSError as err:  # urllib's URLError included
            raise ClientError(f"cannot reach {args.url}: {getattr(err, 'reason', err)}") from None
        except json.JSONDecodeError:
            raise ClientError(f"{method} {path}: the answer is not JSON") from None


def _open(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: Any = None,
    accept: str = "application/json",
) -> Any:
    """The response to one request, open (to read; close it)."""
    # Imported here: the HTTP client is for these commands only, not for `serve` or `worker`.
    import urllib.error
    import urllib.request

    base: str = args.url
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"--url={base!r}: expected http://host:port or https://host:port")
    url = base.rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", accept)
    if args.token:
        request.add_header("Authorization", f"Bearer {args.token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        # Long-polls last up to 30s, event streams send a keep-alive every 15s: leave room.
        return urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        raise ClientError(f"{method} {path}: HTTP {err.code}: {_error_text(err.read())}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ClientError(f"cannot reach {base}: {reason}") from None


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
