"""Unexpected failures become a JSON OAuth error, never a traceback (standalone server)."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import send_error

logger = logging.getLogger("mcp_oidc_provider.standalone")


class ErrorBoundary:
    """Unexpected failures (typically the store unreachable) become a JSON OAuth error.

    RFC 6749 §5.2 has no code for "try later" at the token endpoint; we answer
    ``503 temporarily_unavailable`` with ``Retry-After`` (as §4.1.2.1 does for /authorize),
    log one line naming the exception type, and never send a traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            logger.error("request to %s failed: %s", scope.get("path"), type(exc).__name__)
            if started:
                raise
            await send_error(
                send, 503, "temporarily_unavailable", "The authorization server is unavailable", {"Retry-After": "2"}
            )
