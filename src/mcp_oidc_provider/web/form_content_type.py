"""``/token``, ``/revoke`` and ``/introspect`` take ``application/x-www-form-urlencoded`` only.

RFC 6749 §3.2 (token), RFC 7009 §2.1 (revocation) and RFC 7662 §2.1 (introspection) define
their requests in that format. The SDK's handlers parse ``multipart/form-data`` too, which the
middlewares that read the form before them (the RFC 8707 ``resource`` check, the Basic client
id) do not: a multipart /token request would skip the ``resource`` check. Anything else is
``400 invalid_request`` before any parser runs.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ..core import audit
from .errors import send_error

FORM_ONLY_PATHS = frozenset({"/token", "/revoke", "/introspect"})
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


def media_type(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The request's media type, lower-cased without parameters; None if absent or repeated."""
    values = [value for name, value in headers if name == b"content-type"]
    if len(values) != 1:
        return None
    # RFC 9110 §8.3.1: type and subtype are case-insensitive; parameters (charset) follow a ";".
    return values[0].decode("latin-1").split(";", 1)[0].strip().lower()


class FormContentTypeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("method") == "POST"
            and scope.get("path", "") in FORM_ONLY_PATHS
            and media_type(scope.get("headers", [])) != FORM_MEDIA_TYPE
        ):
            audit.emit("request.refused", reason="content-type")
            await send_error(send, 400, "invalid_request", f"The request body must be {FORM_MEDIA_TYPE}")
            return
        await self.app(scope, receive, send)
