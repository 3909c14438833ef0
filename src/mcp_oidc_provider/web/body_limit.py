"""Bounded request bodies at the authorization endpoints, ours and the SDK's: in size and in time.

The body is read up to the limit before any handler runs, then replayed: an oversized body is
refused with ``413 invalid_request`` (chunked bodies too). A body not complete within
``body_read_timeout_seconds`` of the first read (slowloris: headers, then a trickle) is answered
``408 invalid_request`` with ``Connection: close`` (RFC 9110 §15.5.9), freeing the worker. The
MCP endpoint keeps the SDK's own limit.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core import audit
from .asgi import replaying
from .errors import send_error

BODY_LIMITED_METHODS = frozenset({"POST", "PUT", "PATCH"})
BODY_LIMITED_PATHS = frozenset({"/register", "/token", "/revoke", "/introspect", "/authorize", "/consent"})


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, read_timeout_seconds: float = 10.0) -> None:
        self.app = app
        self.limit = max_body_bytes
        self.read_timeout = read_timeout_seconds

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
        body: bytes | None = None
        try:
            with anyio.move_on_after(self.read_timeout) as deadline:
                body = await self._read(receive)
        except BodyTooLarge:
            await send_error(send, 413, "invalid_request", "Request body too large")
            return
        if deadline.cancelled_caught:
            audit.emit("request.body_timeout", reason=scope.get("path", ""))
            await send_error(
                send, 408, "invalid_request", "The request body did not arrive in time", {"Connection": "close"}
            )
            return
        if body is None:
            return  # the client went away
        await self.app(scope, replaying(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
