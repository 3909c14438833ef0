"""Per-client-IP rate limit on ``/register`` and ``/authorize`` (registration flooding, login spam).

Each path has its own budget (issue 8 §4): ``/register`` a lower one, since every registration
writes a record, than ``/authorize``.

Over the limit: ``429`` with ``Retry-After`` (RFC 6585 §4) and the OAuth code
``temporarily_unavailable`` (RFC 6749 §4.1.2.1).

Where the count lives (``rate_limit_storage_url``): on Redis/Valkey every replica shares one
budget per client IP (PyPI ``limits``, moving window, keys namespaced by our issuer); otherwise
(None, ``memory://``, ``disk://``) each process counts alone.

When Redis cannot answer, the shared limiter fails OPEN (the request goes on, a warning is
logged at most once a minute). The limit is a brake on registration flooding and login spam,
not an access control: every request it lets through is still fully checked, and the login
itself needs the store, which answers 503 on its own when it shares that Redis. Failing closed
would turn a limiter outage into a login outage for everyone.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from typing import Protocol
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from ..core import audit
from ..core.settings import SHARED_LIMIT_SCHEMES
from .errors import send_error

logger = logging.getLogger("mcp_oidc_provider.rate_limit")

RATE_LIMITED_PATHS = frozenset({"/register", "/authorize"})
WINDOW_SECONDS = 60.0
MAX_TRACKED_CLIENTS = 10_000


class Limiter(Protocol):
    async def check(self, client: str) -> float | None:
        """None if allowed (and counted); else seconds until the next event would be."""


class SlidingWindowLimiter:
    """At most ``limit`` events per client in any ``WINDOW_SECONDS``, in this process."""

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

    async def check(self, client: str) -> float | None:
        return self.allow(client, time.monotonic())


class SharedLimiter:
    """At most ``limit`` events per client in any ``WINDOW_SECONDS``, counted on Redis/Valkey
    for every process that shares the URL and the issuer."""

    def __init__(self, limit: int, url: str, namespace: str) -> None:
        from limits import RateLimitItemPerMinute
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        parts = urlsplit(url)
        # Valkey speaks the Redis protocol: one client library (redis-py, already ours) for both.
        scheme = {"valkey": "redis", "valkeys": "rediss"}.get(parts.scheme, parts.scheme)
        self._item = RateLimitItemPerMinute(limit)
        self._storage = RedisStorage(
            f"async+{scheme}://{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else ""),
            implementation="redispy",
            key_prefix="mcp-oidc-limits",
            wrap_exceptions=True,
            # A limiter that waits on a dead Redis would stall the request it should let through.
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
        )
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._namespace = namespace
        self._last_warning = -WINDOW_SECONDS

    async def check(self, client: str) -> float | None:
        try:
            if await self._limiter.hit(self._item, self._namespace, client):
                return None
            stats = await self._limiter.get_window_stats(self._item, self._namespace, client)
            return max(1.0, stats.reset_time - time.time())
        except Exception as exc:
            now = time.monotonic()
            if now - self._last_warning >= WINDOW_SECONDS:
                self._last_warning = now
                logger.warning("rate limit storage unreachable, not limiting (fail open): %s", type(exc).__name__)
            return None


def build_limiter(limit: int, storage_url: str | None, issuer: str, path: str = "") -> Limiter:
    """Shared on Redis/Valkey, per process otherwise."""
    if storage_url is not None and urlsplit(storage_url).scheme in SHARED_LIMIT_SCHEMES:
        # Deployments sharing one Redis keep separate budgets: the issuer names ours; the path
        # keeps each endpoint's budget its own.
        return SharedLimiter(limit, storage_url, hashlib.sha256(issuer.encode()).hexdigest()[:16] + path)
    return SlidingWindowLimiter(limit)


def path_budgets(limit_per_minute: int, register_limit_per_minute: int | None) -> dict[str, int]:
    """Requests per minute per path: /register at most its own budget (0: none of its own)."""
    register = limit_per_minute
    if register_limit_per_minute:
        register = min(register, register_limit_per_minute)
    return {"/authorize": limit_per_minute, "/register": register}


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
    def __init__(
        self,
        app: ASGIApp,
        limit_per_minute: int,
        trust_forwarded_for: bool,
        *,
        storage_url: str | None = None,
        issuer: str = "",
        register_limit_per_minute: int | None = None,
    ) -> None:
        self.app = app
        self.limiters = {
            path: build_limiter(limit, storage_url, issuer, path)
            for path, limit in path_budgets(limit_per_minute, register_limit_per_minute).items()
        }
        self.trust_forwarded_for = trust_forwarded_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter = self.limiters.get(scope.get("path", "")) if scope["type"] == "http" else None
        if limiter is not None:
            wait = await limiter.check(client_ip(scope, self.trust_forwarded_for))
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
