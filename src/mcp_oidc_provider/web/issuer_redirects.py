"""``iss`` on the error redirects the SDK builds at ``/authorize`` (RFC 9207 §2), as every
authorization response we build ourselves carries it."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def with_iss(location: str, issuer: str) -> str:
    parts = urlsplit(location)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = {k for k, _ in query}
    if "error" not in names or "iss" in names:
        return location
    return urlunsplit(parts._replace(query=urlencode([*query, ("iss", issuer)])))


class IssuerOnRedirectsMiddleware:
    def __init__(self, app: ASGIApp, issuer: str) -> None:
        self.app = app
        self.issuer = issuer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/authorize":
            await self.app(scope, receive, send)
            return
        issuer = self.issuer

        async def add_issuer(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (302, 303):
                headers = []
                for name, value in message.get("headers", []):
                    if name == b"location":
                        value = with_iss(value.decode("latin-1"), issuer).encode("latin-1")
                    headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, add_issuer)
