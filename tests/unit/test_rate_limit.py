"""The per-client-IP rate limit on /register and /authorize (web/rate_limit.py): the sliding window
with a FrozenClock, and the middleware called as a plain ASGI app."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from mcp_oidc_provider.core.clock import FrozenClock
from mcp_oidc_provider.web import rate_limit
from mcp_oidc_provider.web.rate_limit import (
    WINDOW_SECONDS,
    RateLimitMiddleware,
    SlidingWindowLimiter,
    client_ip,
)

pytestmark = pytest.mark.unit


# --- the window ------------------------------------------------------------------------------


def test_a_client_gets_its_budget_then_waits_for_the_oldest_event_to_leave_the_window() -> None:
    clock = FrozenClock(1000.0)
    limiter = SlidingWindowLimiter(3)
    for _ in range(3):
        assert limiter.allow("a", clock.now()) is None
        clock.advance(10)
    # Events at 1000, 1010, 1020; now 1030: the first leaves the window at 1060.
    assert limiter.allow("a", clock.now()) == pytest.approx(30.0)
    clock.advance(29.5)
    assert limiter.allow("a", clock.now()) == pytest.approx(1.0)  # never advertise less than 1 s
    clock.advance(0.5)
    assert limiter.allow("a", clock.now()) is None


def test_refused_attempts_do_not_extend_the_wait() -> None:
    clock = FrozenClock(0.0)
    limiter = SlidingWindowLimiter(1)
    assert limiter.allow("a", clock.now()) is None
    for _ in range(50):
        clock.advance(1)
        assert limiter.allow("a", clock.now()) is not None
    clock.advance(WINDOW_SECONDS - 50)
    assert limiter.allow("a", clock.now()) is None


def test_clients_have_independent_budgets() -> None:
    limiter = SlidingWindowLimiter(1)
    assert limiter.allow("10.0.0.1", 0.0) is None
    assert limiter.allow("10.0.0.1", 0.0) is not None
    assert limiter.allow("10.0.0.2", 0.0) is None


def test_the_number_of_tracked_clients_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # A flood of spoofed source addresses must not grow memory without bound: the oldest
    # tracked client is forgotten (and so gets a fresh budget).
    monkeypatch.setattr(rate_limit, "MAX_TRACKED_CLIENTS", 3)
    limiter = SlidingWindowLimiter(1)
    for client in ("a", "b", "c", "d"):
        assert limiter.allow(client, 0.0) is None
    assert len(limiter._events) == 3
    assert limiter.allow("a", 0.0) is None
    assert limiter.allow("d", 0.0) is not None


# --- which address counts (X-Forwarded-For) ----------------------------------------------------


def scope(path: str = "/register", client: tuple[str, int] | None = ("198.51.100.7", 5555), **headers: str) -> Scope:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "method": "POST", "path": path, "headers": raw, "client": client}


def test_the_socket_address_counts_unless_the_proxy_is_trusted() -> None:
    spoofed = scope(x_forwarded_for="203.0.113.9")
    assert client_ip(spoofed, trust_forwarded_for=False) == "198.51.100.7"
    assert client_ip(spoofed, trust_forwarded_for=True) == "203.0.113.9"


def test_behind_a_trusted_proxy_only_the_entry_it_appended_counts() -> None:
    # The client controls everything left of what our proxy appended.
    s = scope(x_forwarded_for="1.1.1.1, 2.2.2.2,  203.0.113.9 ")
    assert client_ip(s, trust_forwarded_for=True) == "203.0.113.9"


def test_with_several_forwarded_headers_the_last_one_counts() -> None:
    s = scope()
    s["headers"] = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"10.1.1.1, 203.0.113.9")]
    assert client_ip(s, trust_forwarded_for=True) == "203.0.113.9"


def test_without_a_forwarded_header_or_a_socket_address_the_client_is_unknown() -> None:
    assert client_ip(scope(), trust_forwarded_for=True) == "198.51.100.7"
    assert client_ip(scope(client=None), trust_forwarded_for=False) == "unknown"


# --- the middleware as an ASGI app ----------------------------------------------------------------


class Recorder:
    """The downstream app: counts the requests that got through."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(app: Any, s: Scope) -> tuple[int, dict[str, str], bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(s, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


async def test_over_the_limit_a_client_gets_429_temporarily_unavailable_with_retry_after() -> None:
    downstream = Recorder()
    app = RateLimitMiddleware(downstream, limit_per_minute=2, trust_forwarded_for=False)
    assert (await call(app, scope("/register")))[0] == 200
    assert (await call(app, scope("/authorize")))[0] == 200  # one budget for both paths
    status, headers, body = await call(app, scope("/register"))
    # RFC 6585 §4 (429 + Retry-After), RFC 6749 §4.1.2.1 (temporarily_unavailable).
    assert status == 429
    assert 1 <= int(headers["retry-after"]) <= WINDOW_SECONDS
    assert headers["cache-control"] == "no-store"
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == "temporarily_unavailable"
    assert downstream.calls == 2


async def test_other_paths_and_other_clients_are_not_limited() -> None:
    downstream = Recorder()
    app = RateLimitMiddleware(downstream, limit_per_minute=1, trust_forwarded_for=False)
    await call(app, scope("/register"))
    for path in ("/token", "/mcp", "/consent", "/register/"):
        assert (await call(app, scope(path)))[0] == 200
    assert (await call(app, scope("/register", client=("198.51.100.8", 1))))[0] == 200
    assert (await call(app, {**scope("/register"), "type": "websocket"}))[0] == 200  # only http is limited


async def test_a_client_cannot_dodge_the_limit_by_varying_x_forwarded_for_without_a_trusted_proxy() -> None:
    app = RateLimitMiddleware(Recorder(), limit_per_minute=1, trust_forwarded_for=False)
    assert (await call(app, scope(x_forwarded_for="1.0.0.1")))[0] == 200
    assert (await call(app, scope(x_forwarded_for="1.0.0.2")))[0] == 429


async def test_behind_a_trusted_proxy_each_real_client_has_its_own_budget() -> None:
    app = RateLimitMiddleware(Recorder(), limit_per_minute=1, trust_forwarded_for=True)
    proxy = ("10.0.0.1", 1)
    assert (await call(app, scope(client=proxy, x_forwarded_for="203.0.113.1")))[0] == 200
    assert (await call(app, scope(client=proxy, x_forwarded_for="203.0.113.2")))[0] == 200
    # A prefix chosen by the client does not give it a new budget.
    assert (await call(app, scope(client=proxy, x_forwarded_for="9.9.9.9, 203.0.113.1")))[0] == 429
