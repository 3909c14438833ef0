"""Per-client-IP rate limit on ``/register`` and ``/authorize`` (registration flooding, login spam).

Over the limit: ``429`` with ``Retry-After`` (RFC 6585 §4) and the OAuth code
``temporarily_unavailable`` (RFC 6749 §4.1.2.1). The count is per process.
"""

from __future__ import annotations

import time
from collections import deque

from starlette.types import ASGIApp, Receive, Scope, Send

from ..core import audit
from .errors import send_error

RATE_LIMITED_PATHS = frozenset({"/register", "/authorize"})
WINDOW_SECONDS = 60.0
MAX_TRACKED_CLIENTS = 10_000


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


def client_ip(scope: Scope, trust_forwarded_for: bool) -> str:
    if trust_forwarded_for:
        forwarded = [value for name, value in scope.get("headers", []) if name == b"x-forwarded-for"]
        if forwarded:
            # The right-most entry of the last header is the one our own proxy wrote; all
            # before it is whatever the client sent.
            return str(forwarded[-1].decode("latin-1")).split(",")[-1].strip()
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limit_per_minute: int, trust_forwarded_for: bool) -> None:
        self.app = app
        self.limiter = SlidingWindowLimiter(limit_per_minute)
        self.trust_forwarded_for = trust_forwarded_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "") in RATE_LIMITED_PATHS:
            wait = self.limiter.allow(client_ip(scope, self.trust_forwarded_for), time.monotonic())
            if wait is not None:
                audit.emit("rate_limit.exceeded", reason=scope.get("path", ""))
                await send_error(
                    send,
                    429,
                    "temporarily_unavailable",
                    "Too many requests; try again later",
                    {"Retry-After": str(int(wait))},
                )
                return
        await self.app(scope, receive, send)
