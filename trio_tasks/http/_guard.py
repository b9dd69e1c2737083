"""Who may call the API: bearer tokens, the ``Host`` header, cross-origin requests and CORS.

:class:`Guard` is ASGI middleware around the app, so that a refused request costs one pass over
its headers and never reaches a route (nor reads its body). With none of ``API_TOKEN``,
``ALLOWED_HOSTS`` and ``CORS_ORIGINS`` set it still refuses cross-origin writes from browsers;
``docs/security.md`` explains the model.

- **Tokens** (``API_TOKEN``, ``API_READ_TOKEN``, comma-separated for rotation): every endpoint but
  ``/health`` and the dashboard's files (``GET /ui``) needs ``Authorization: Bearer <token>``
  (``/metrics`` too unless ``METRICS_PUBLIC``). A read token is enough for ``GET`` and ``HEAD``;
  any other method needs a full token. Each presented token is compared with every configured
  one in constant time. Missing or unknown: 401 with ``WWW-Authenticate: Bearer``; a read token
  on a write: 403.
- **Host** (``ALLOWED_HOSTS``): the ``Host`` header, port aside, must be one of them (``*``: any);
  otherwise 400. This defeats DNS rebinding against a node on a private address.
- **Origin**: a browser sends ``Origin`` with every cross-site ``POST`` or ``DELETE``, even the
  "simple" ``text/plain`` ones that need no preflight. Such a request from an origin that is not
  the server's own is refused (403) unless ``CORS_ORIGINS`` lists it (``*``: any). Listed
  origins also get CORS answers: preflights (``OPTIONS``) and ``Access-Control-Allow-Origin``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .._config import Config, split_list
from ._errors import encode_json

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths open without a token: a load balancer's health check needs none, and reveals nothing.
OPEN_PATHS = frozenset({"/health"})
#: The dashboard's static files are open too: they hold no secrets, and the page asks for the
#: token that its API calls then carry (``_ui``). The Host check still applies to them.
OPEN_PREFIX = "/ui"
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CORS_METHODS = "GET, HEAD, POST, DELETE, OPTIONS"
_CORS_HEADERS = "Authorization, Content-Type"
_CORS_MAX_AGE = "600"


def guarded(app: Any, config: Config) -> Any:
    """``app`` (an ASGI application) behind a :class:`Guard` for ``config``."""
    return Guard(app, config)


class Guard:
    """ASGI middleware enforcing tokens, allowed hosts and the origin rules (module docstring).

    Lifespan and other non-HTTP scopes pass through untouched.
    """

    def __init__(self, app: App, config: Config) -> None:
        self.app = app
        self.write_tokens = _tokens(config.api_token)
        self.read_tokens = _tokens(config.api_read_token) + self.write_tokens
        self.open_paths = OPEN_PATHS | ({"/metrics"} if config.metrics_public else frozenset())
        hosts = split_list(config.allowed_hosts)
        self.any_host = "*" in hosts
        self.hosts = frozenset(h.lower() for h in hosts) if hosts else None
        origins = split_list(config.cors_origins)
        self.any_origin = "*" in origins
        self.origins = frozenset(o.rstrip("/").lower() for o in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = authorization = preflight = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
            elif name == b"authorization":
                authorization = value
            elif name == b"access-control-request-method":
                preflight = value
        method: str = scope["method"]
        path: str = scope["path"]
        if self.hosts is not None and not self.any_host and path not in OPEN_PATHS:
            name = _host_name(host)
            if name not in self.hosts:
                shown = "none" if host is None else repr(host.decode("latin-1")[:100])
                await _refuse(send, 400, f"host {shown} is not allowed (ALLOWED_HOSTS)")
                return
        cors_origin = None
        if origin is not None:
            text = origin.decode("latin-1").rstrip("/").lower()
            if self.any_origin or text in self.origins:
                cors_origin = origin.decode("latin-1")
                if method == "OPTIONS" and preflight is not None:
                    await _preflight(send, cors_origin)
                    return
            elif method not in _READ_METHODS and not _same_origin(text, host, scope):
                await _refuse(
                    send,
                    403,
                    f"cross-origin request refused: origin {text[:100]!r} is not allowed "
                    "(CORS_ORIGINS)",
                )
                return
        if self.read_tokens and path not in self.open_paths and not _dashboard(method, path):
            refusal = self._check_token(authorization, method)
            if refusal is not None:
                await _refuse(send, *refusal)
                return
        if cors_origin is None:
            await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, _with_cors(send, cors_origin))

    def _check_token(
        self, authorization: bytes | None, method: str
    ) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        challenge = b'Bearer realm="trio-tasks"'
        if authorization is None:
            return (
                401,
                "missing API token: send Authorization: Bearer <token>",
                [(b"www-authenticate", challenge)],
            )
        scheme, _, token = authorization.strip().partition(b" ")
        token = token.strip()
        write = _matches(token, self.write_tokens)
        if scheme.lower() != b"bearer" or not (write or _matches(token, self.read_tokens)):
            return (
                401,
                "invalid API token",
                [(b"www-authenticate", challenge + b', error="invalid_token"')],
            )
        if not write and method not in _READ_METHODS:
            return (
                403,
                "this token may only read: GET and HEAD need it, not " + method,
                [(b"www-authenticate", challenge + b', error="insufficient_scope"')],
            )
        return None


def _dashboard(method: str, path: str) -> bool:
    # Reading "/ui" and "/ui/<file>" only: "/uix" is not the dashboard. ("/ui/../stats" is no way
    # around the token: paths are routed as written, and /ui/<file> answers files only.)
    if method not in _READ_METHODS:
        return False
    return path == OPEN_PREFIX or path.startswith(OPEN_PREFIX + "/")


def _tokens(setting: str | None) -> tuple[bytes, ...]:
    return tuple(t.encode() for t in split_list(setting))


def _matches(token: bytes, tokens: tuple[bytes, ...]) -> bool:
    # Every configured token is compared, each in constant time: neither which one matched
    # nor how much of one did shows in the time taken.
    found = False
    for candidate in tokens:
        found |= hmac.compare_digest(token, candidate)
    return found


def _host_name(host: bytes | None) -> str | None:
    if host is None:
        return None
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):  # [::1]:8080
        return text[1:].partition("]")[0]
    return text.rpartition(":")[0] if text.count(":") == 1 else text


def _same_origin(origin: str, host: bytes | None, scope: Scope) -> bool:
    if host is None:
        return False
    scheme = scope.get("scheme", "http")
    return origin == f"{scheme}://{host.decode('latin-1').lower()}"


async def _refuse(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = (encode_json({"error": message}) + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _preflight(send: Send, origin: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [
                *_cors_headers(origin),
                (b"access-control-allow-methods", _CORS_METHODS.encode()),
                (b"access-control-allow-headers", _CORS_HEADERS.encode()),
                (b"access-control-max-age", _CORS_MAX_AGE.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"vary", b"Origin"),
    ]


def _with_cors(send: Send, origin: str) -> Send:
    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], *_cors_headers(origin)]}
        await send(message)

    return send_with_cors
