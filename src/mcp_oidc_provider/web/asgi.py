"""Small ASGI helpers shared by the middlewares that look at a request body."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def read_body(receive: Receive) -> bytes | None:
    """The whole body, or None if the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then the client's later messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class TokenFormCheck:
    """Base of the middlewares that check the /token form before the SDK's handler reads it:
    the body is read once here, handed to :meth:`refused` as fields, and replayed to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") == "/token"):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return  # the client went away
        if await self.refused(parse_qsl(body.decode("latin-1"), keep_blank_values=True), send):
            return
        await self.app(scope, replaying(body, receive), send)

    async def refused(self, fields: list[tuple[str, str]], send: Send) -> bool:
        """Answer an error through ``send`` and return True to stop the request."""
        raise NotImplementedError
