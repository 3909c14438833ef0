"""Fail closed, and say so, when the store is unreachable.

The SDK's bearer middleware knows two outcomes of a token check: a token (request goes on)
or none (401, ``invalid_token``). An exception becomes a 500 with a traceback. So when the
store cannot be reached, the provider and the verifier refuse the token and report the
outage here; :class:`StoreOutageMiddleware`, wrapped around the MCP app, turns that request's
401 into ``503 temporarily_unavailable`` with ``Retry-After``, so clients retry instead of
starting a new login. Without the middleware the answer is still a refusal (401).
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class _Outage:
    seen: bool = False


_current: ContextVar[_Outage | None] = ContextVar("mcp_oidc_provider_store_outage", default=None)

RETRY_AFTER_SECONDS = 2


def report_store_outage() -> None:
    """Called where a store operation failed during a request."""
    outage = _current.get()
    if outage is not None:
        outage.seen = True


class StoreOutageMiddleware:
    """ASGI middleware: a refusal caused by a store outage is a 503, not a 401."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        outage = _Outage()
        reset = _current.set(outage)
        replaced = False

        async def send_or_replace(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return
            if message["type"] == "http.response.start" and outage.seen and message["status"] == 401:
                replaced = True
                body = json.dumps(
                    {"error": "temporarily_unavailable", "error_description": "The token store is unreachable"}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                            (b"cache-control", b"no-store"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send(message)

        try:
            await self.app(scope, receive, send_or_replace)
        finally:
            _current.reset(reset)
