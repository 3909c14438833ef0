"""``/register`` bodies that are not a JSON object get ``400 invalid_client_metadata``
(RFC 7591 §3.2.2; mcp 1.x answers some of them with 500)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from .asgi import read_body, replaying
from .errors import send_error


def is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


class RegisterBodyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") == "/register"):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return
        if not is_json_object(body):
            await send_error(send, 400, "invalid_client_metadata", "The body must be a JSON object")
            return
        await self.app(scope, replaying(body, receive), send)
