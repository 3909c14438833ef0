"""Abuse limits in front of the authorization endpoints, as one ASGI middleware.

- Per-client-IP rate limit on ``/register`` and ``/authorize`` (registration flooding, login
  spam): ``429`` with ``Retry-After`` and the OAuth code ``temporarily_unavailable``
  (RFC 6749 §4.1.2.1; RFC 6585 §4 for the status). The count is per process.
- Bounded request bodies at the authorization endpoints (``413``, ``invalid_request``),
  tighter than the SDK's own limits.
- A store outage during the bearer check answers 503, not 401 (:mod:`.outage`).
- ``resource`` at ``/token`` must name one of our MCP servers (RFC 8707 §2; the SDK ignores
  the parameter): ``400 invalid_target``; the token flows then require it to be the grant's.
- ``/register`` bodies that are not a JSON object get ``400 invalid_client_metadata``
  (RFC 7591 §3.2.2; mcp 1.x answers some of them with 500).
- Error redirects from ``/authorize`` that the SDK builds get our ``iss`` (RFC 9207 §2), as
  every authorization response we build ourselves does.

Wrap the app the SDK builds: ``app = provider.protect(server.streamable_http_app(...))``.
"""

from __future__ import annotations

import json
import time
from collections import deque
from contextvars import ContextVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import audit
from .outage import StoreOutageMiddleware
from .settings import ProviderSettings
from .web.basic_client_id import BasicClientIdMiddleware

RATE_LIMITED_PATHS = frozenset({"/register", "/authorize"})
BODY_LIMITED_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: The authorization endpoints, ours and the SDK's; the MCP endpoint keeps the SDK's own limit.
BODY_LIMITED_PATHS = frozenset({"/register", "/token", "/revoke", "/authorize", "/consent"})
WINDOW_SECONDS = 60.0
MAX_TRACKED_CLIENTS = 10_000


#: The RFC 8707 ``resource`` of the current /token request, which the SDK does not pass on;
#: the token flows check it against the grant's (see :func:`.token.ensure_resource_of_grant`).
requested_resource: ContextVar[str | None] = ContextVar("mcp_oidc_provider_token_resource", default=None)


def _is_served(resource: str, served: tuple[str, ...]) -> bool:
    return any(resource.rstrip("/") == r.rstrip("/") for r in served)


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


def _with_iss(location: str, issuer: str) -> str:
    parts = urlsplit(location)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = {k for k, _ in query}
    if "error" not in names or "iss" in names:
        return location
    return urlunsplit(parts._replace(query=urlencode([*query, ("iss", issuer)])))


class SlidingWindowLimiter:
    """At most ``limit`` events per client in any ``WINDOW_SECONDS``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._events: dict[str, deque[float]] = {}

    def allow(self, client: str, now: float) -> float | None:
        """None if allowed; else seconds until the next event would be."""
        events = self._events.get(client)
        if events is None:
            if len(self._events) >= MAX_TRACKED_CLIENTS:
                self._events.pop(next(iter(self._events)))
            events = self._events[client] = deque()
        while events and events[0] <= now - WINDOW_SECONDS:
            events.popleft()
        if len(events) >= self.limit:
            return max(1.0, events[0] + WINDOW_SECONDS - now)
        events.append(now)
        return None


async def _send_json(send: Send, status: int, body: dict[str, str], headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    raw_headers.append((b"cache-control", b"no-store"))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: ProviderSettings, issuer: str) -> None:
        self.app = StoreOutageMiddleware(BasicClientIdMiddleware(app, settings.max_body_bytes))
        self.settings = settings
        self.issuer = issuer
        self.limiter = SlidingWindowLimiter(settings.rate_limit_per_minute) if settings.rate_limit_per_minute else None

    def client_ip(self, scope: Scope) -> str:
        if self.settings.trust_forwarded_for:
            forwarded = [value for name, value in scope.get("headers", []) if name == b"x-forwarded-for"]
            if forwarded:
                # The right-most entry of the last header is the one our own proxy wrote; all
                # before it is whatever the client sent.
                return str(forwarded[-1].decode("latin-1")).split(",")[-1].strip()
        client = scope.get("client")
        return str(client[0]) if client else "unknown"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.limiter is not None and path in RATE_LIMITED_PATHS:
            wait = self.limiter.allow(self.client_ip(scope), time.monotonic())
            if wait is not None:
                audit.emit("rate_limit.exceeded", reason=path)
                await _send_json(
                    send,
                    429,
                    {"error": "temporarily_unavailable", "error_description": "Too many requests; try again later"},
                    {"Retry-After": str(int(wait))},
                )
                return
        if path == "/authorize":
            send = self._with_issuer_on_error_redirects(send)
        if scope.get("method") in BODY_LIMITED_METHODS and path in BODY_LIMITED_PATHS:
            await self._with_body_limit(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _with_issuer_on_error_redirects(self, send: Send) -> Send:
        issuer = self.issuer

        async def add_issuer(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (302, 303):
                headers = []
                for name, value in message.get("headers", []):
                    if name == b"location":
                        value = _with_iss(value.decode("latin-1"), issuer).encode("latin-1")
                    headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        return add_issuer

    async def _with_body_limit(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the (small) body of an authorization-endpoint request up to the limit first,
        then replay it to the app: an oversized body is refused before any handler runs."""
        limit = self.settings.max_body_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await _send_json(send, 413, {"error": "invalid_request", "error_description": "Request body too large"})
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_json(send, 413, {"error": "invalid_request", "error_description": "Request body too large"})
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if scope.get("path") == "/register" and not _is_json_object(body):
            await _send_json(
                send,
                400,
                {"error": "invalid_client_metadata", "error_description": "The body must be a JSON object"},
            )
            return
        if scope.get("path") == "/token":
            resources = [v for k, v in parse_qsl(body.decode("latin-1"), keep_blank_values=True) if k == "resource"]
            if len(resources) > 1 or (resources and not _is_served(resources[0], self.settings.resource_urls)):
                # RFC 8707 §2: a resource we do not serve, or several, at the token endpoint.
                audit.emit("resource.refused", reason="/token")
                await _send_json(
                    send, 400, {"error": "invalid_target", "error_description": "The resource is not served here"}
                )
                return
            if resources:
                requested_resource.set(resources[0])
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
