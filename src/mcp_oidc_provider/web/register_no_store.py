"""``Cache-Control: no-store`` on every ``/register`` response (RFC 7591 §3.2.1: it carries
the client secret). The SDK's handler sets no caching headers there."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .headers import NO_STORE

_NO_STORE_HEADERS = [(k.lower().encode(), v.encode()) for k, v in NO_STORE.items()]
_REPLACED = {name for name, _ in _NO_STORE_HEADERS}


class RegisterNoStoreMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope.get("path") == "/register"):
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _REPLACED]
                message = {**message, "headers": headers + _NO_STORE_HEADERS}
            await send(message)

        await self.app(scope, receive, send_no_store)
