"""Bounded request bodies at the authorization endpoints, ours and the SDK's.

The body is read up to the limit before any handler runs, then replayed: an oversized body is
refused with ``413 invalid_request`` (chunked bodies too). The MCP endpoint keeps the SDK's own
limit.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .asgi import replaying
from .errors import send_error

BODY_LIMITED_METHODS = frozenset({"POST", "PUT", "PATCH"})
BODY_LIMITED_PATHS = frozenset({"/register", "/token", "/revoke", "/authorize", "/consent"})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope.get("method") in BODY_LIMITED_METHODS
            and scope.get("path", "") in BODY_LIMITED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await send_error(send, 413, "invalid_request", "Request body too large")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await send_error(send, 413, "invalid_request", "Request body too large")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)
