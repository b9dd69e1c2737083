"""Errors as JSON answers: ``{"error": "<message>"}`` with the status of SPEC §6.

Every error the API can meet has a handler here, so a client never sees an HTML page: trio-tasks
errors (bad input, unknown type or id, queue full, shutting down, broker unreachable), HTTP
errors raised by Quart and werkzeug (unknown route, wrong method, body too large) and, last,
unexpected bugs (a 500 without details; the traceback goes to the log).
"""

from __future__ import annotations

import json
from typing import Any

from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed

from .._errors import (
    BrokerUnavailable,
    InvalidValue,
    JobAlreadyFinished,
    JobNotFound,
    JobNotRetryable,
    QueueFull,
    ShuttingDown,
    UnknownJobType,
)

#: Seconds a client is asked to wait before submitting again after "queue full".
QUEUE_FULL_RETRY_AFTER = 1

_JSON = "application/json"


# Built once: json.dumps() with any non-default option builds a new encoder on every call.
#: Compact JSON text of a value (non-ASCII escaped, so lone surrogates are safe too).
encode_json = json.JSONEncoder(separators=(",", ":"), default=str).encode


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON answer ending with a newline (friendly to ``curl``)."""
    return Response(encode_json(body) + "\n", status, headers, content_type=_JSON)


def error_response(
    code: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """``{"error": message, **extra}`` with the HTTP status ``code``."""
    return json_response({"error": message, **extra}, code, headers)


async def _invalid(exc: InvalidValue) -> Response:
    return error_response(400, str(exc))


async def _unknown_type(exc: UnknownJobType) -> Response:
    return error_response(422, str(exc), known_types=exc.known)


async def _not_found(exc: JobNotFound) -> Response:
    return error_response(404, str(exc))


async def _finished(exc: JobAlreadyFinished) -> Response:
    return error_response(409, str(exc), status=exc.status)


async def _not_retryable(exc: JobNotRetryable) -> Response:
    return error_response(409, str(exc), status=exc.status)


async def _queue_full(exc: QueueFull) -> Response:
    return error_response(503, str(exc), {"Retry-After": str(QUEUE_FULL_RETRY_AFTER)})


async def _shutting_down(exc: ShuttingDown) -> Response:
    return error_response(503, str(exc))


async def _broker_unavailable(exc: BrokerUnavailable) -> Response:
    # Redis is unreachable: a transient state the node recovers from; clients retry (with the
    # same job_id for submissions, which never duplicates a job).
    return error_response(503, str(exc), {"Retry-After": str(QUEUE_FULL_RETRY_AFTER)})


async def _internal(exc: InternalServerError) -> Response:
    # Quart has already logged the original exception with its traceback.
    return error_response(500, "internal server error")


def register_error_handlers(app: QuartTrio, max_body_size: int) -> None:
    """Install the JSON error handlers on ``app``.

    ``max_body_size`` is named in the 413 answer so a client knows the limit.
    """
    messages = {
        404: "not found: no such endpoint",
        405: "method not allowed",
        413: f"request body too large: the limit is {max_body_size} bytes",
    }

    async def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        headers: dict[str, str] | None = None
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            headers = {"Allow": ", ".join(sorted(exc.valid_methods))}
        message = messages.get(code) or (exc.description or exc.name).strip()
        return error_response(code, message, headers)

    app.register_error_handler(InvalidValue, _invalid)
    app.register_error_handler(UnknownJobType, _unknown_type)
    app.register_error_handler(JobNotFound, _not_found)
    app.register_error_handler(JobAlreadyFinished, _finished)
    app.register_error_handler(JobNotRetryable, _not_retryable)
    app.register_error_handler(QueueFull, _queue_full)
    app.register_error_handler(ShuttingDown, _shutting_down)
    app.register_error_handler(BrokerUnavailable, _broker_unavailable)
    app.register_error_handler(InternalServerError, _internal)
    app.register_error_handler(HTTPException, http_error)
