"""The discovery documents the SDK serves, as we must publish them.

- RFC 8414 authorization server metadata: the SDK's document does not know CIMD
  (``client_id_metadata_document_supported``, MCP "Client Registration"), lists no ``none``
  auth method although public clients work, lacks RFC 9207's
  ``authorization_response_iss_parameter_supported``, and names ``registration_endpoint`` even
  where registration is off. Clients pick CIMD only when the document says so and lists
  ``none`` (MCP 2026-07-28), so the body is replaced by the provider's own document.
- RFC 9728 protected resource metadata: ``authorization_servers`` must be byte-identical to our
  issuer (RFC 8414 §3.3; mcp 2.x clients compare exactly), while mcp 1.x writes a path-less
  issuer with a trailing slash: the entry is rewritten to the one spelling we use everywhere.
- With registration off, ``/register`` answers an OAuth error rather than the router's 404.

The SDK's own headers (CORS, caching) are kept; only the JSON body changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import send_error

AS_METADATA_PATH = "/.well-known/oauth-authorization-server"
PRM_PATH = "/.well-known/oauth-protected-resource"

Rewrite = Callable[[dict[str, Any]], dict[str, Any]]


class MetadataDocumentsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        issuer: str,
        authorization_server_metadata: dict[str, Any] | None = None,
        registration_enabled: bool = True,
    ) -> None:
        self.app = app
        self.issuer = issuer
        self.as_metadata = authorization_server_metadata
        self.registration_enabled = registration_enabled

    def _rewrite_for(self, path: str) -> Rewrite | None:
        if self.as_metadata is not None and (path == AS_METADATA_PATH or path.startswith(AS_METADATA_PATH + "/")):
            document = self.as_metadata
            return lambda _: document
        if path == PRM_PATH or path.startswith(PRM_PATH + "/"):
            issuer = self.issuer
            return lambda prm: {**prm, "authorization_servers": [issuer]} if "authorization_servers" in prm else prm
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == "/register" and not self.registration_enabled and scope.get("method") != "OPTIONS":
            await send_error(
                send,
                403,
                "access_denied",
                "Dynamic client registration is turned off here; identify the client with a Client ID Metadata "
                "Document (an https client_id URL)",
            )
            return
        rewrite = self._rewrite_for(path) if scope.get("method") == "GET" else None
        if rewrite is None:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _rewriting_json(send, rewrite))


def _rewriting_json(send: Send, rewrite: Rewrite) -> Send:
    start: Message | None = None
    chunks: list[bytes] = []

    async def rewriting(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(chunks)
        if start["status"] == 200:
            try:
                document = json.loads(body)
                if isinstance(document, dict):
                    body = json.dumps(rewrite(document)).encode()
            except ValueError:
                pass
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return rewriting
