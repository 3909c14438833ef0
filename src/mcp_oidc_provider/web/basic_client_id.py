"""The client id from HTTP Basic authentication at ``/token`` and ``/revoke`` (RFC 6749 §2.3.1).

RFC 6749 §2.3.1: an authorization server MUST support HTTP Basic for clients with a password,
the client id and secret each form-urlencoded, then joined by ``:`` and base64-encoded. The
MCP SDK's client authenticator reads the client id from the form body only, so a client that
authenticates with Basic alone (the TypeScript SDK with ``client_secret_basic``) gets
``invalid_client: Missing client_id``. This middleware copies the Basic credentials into the
form body, where the SDK looks, and leaves the header in place, so the SDK still checks the
secret of a ``client_secret_basic`` client against the header.

============================================  ==========================================
Request with ``Authorization: Basic ...``      Outcome
============================================  ==========================================
no ``client_id`` in the body                  ``client_id`` (and ``client_secret``) added
the same ``client_id`` in the body            unchanged
a different ``client_id`` in the body         ``401 invalid_client``
a ``client_secret`` in the body too           ``400 invalid_request`` (two methods)
header not ``id:secret`` in base64/UTF-8      ``401 invalid_client``
============================================  ==========================================

Requests without a Basic header, other paths and other methods pass through untouched.
"""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import parse_qsl, unquote, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The endpoints where the SDK authenticates a client from the form body.
CLIENT_AUTHENTICATED_PATHS = frozenset({"/token", "/revoke"})
#: Bound on the body read here; the RequestGuard in front already holds it to its own limit.
DEFAULT_MAX_BODY_BYTES = 64 * 1024


class _ClientGone(Exception):
    pass


class MalformedBasicCredentials(ValueError):
    """The Authorization header is Basic but does not carry ``client_id:client_secret``."""


def basic_credentials(headers: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    """The (client_id, client_secret) of a Basic Authorization header, or None if there is none.

    Raises :class:`MalformedBasicCredentials` for a Basic header that does not decode.
    """
    values = [value for name, value in headers if name == b"authorization"]
    if not values:
        return None
    scheme, _, encoded = values[0].decode("latin-1").strip().partition(" ")
    # RFC 9110 §11.1: the scheme name is case-insensitive.
    if scheme.lower() != "basic":
        return None
    if len(values) > 1:
        raise MalformedBasicCredentials("more than one Authorization header")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise MalformedBasicCredentials("not base64 of UTF-8") from exc
    raw_id, colon, raw_secret = decoded.partition(":")
    if not colon:
        raise MalformedBasicCredentials("no ':' between client id and secret")
    # RFC 6749 §2.3.1 form-urlencodes both parts; ``unquote`` (not ``unquote_plus``) decodes them
    # exactly as the SDK's authenticator does when it compares the header with the body.
    try:
        client_id, client_secret = unquote(raw_id, errors="strict"), unquote(raw_secret, errors="strict")
    except UnicodeDecodeError as exc:
        raise MalformedBasicCredentials("a percent-escape is not UTF-8") from exc
    if not client_id:
        raise MalformedBasicCredentials("empty client id")
    return client_id, client_secret


async def _send_error(send: Send, status: int, error: str, description: str, challenge: bool = False) -> None:
    payload = json.dumps({"error": error, "error_description": description}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if challenge:
        # RFC 6749 §5.2: a 401 answers with the scheme the client attempted.
        headers.append((b"www-authenticate", b'Basic realm="oauth"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


def _is_form(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";")[0].strip().lower() == b"application/x-www-form-urlencoded"
    return False


class BasicClientIdMiddleware:
    """ASGI middleware: the SDK sees the Basic client id in the form body (RFC 6749 §2.3.1)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or scope.get("path") not in CLIENT_AUTHENTICATED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        try:
            credentials = basic_credentials(headers)
        except MalformedBasicCredentials:
            await _send_error(send, 401, "invalid_client", "Malformed Basic authentication", challenge=True)
            return
        if credentials is None or not _is_form(headers):
            await self.app(scope, receive, send)
            return

        try:
            body = await self._read_body(receive)
        except _ClientGone:
            return
        if body is None:
            await _send_error(send, 413, "invalid_request", "Request body too large")
            return
        try:
            form = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            await _send_error(send, 400, "invalid_request", "The body must be form-urlencoded")
            return
        basic_id, basic_secret = credentials
        body_ids = [value for name, value in form if name == "client_id" and value]
        if any(name == "client_secret" and value for name, value in form):
            # RFC 6749 §2.3 / §5.2: one authentication method per request.
            await _send_error(send, 400, "invalid_request", "Client credentials in both the header and the body")
            return
        if body_ids and body_ids != [basic_id]:
            # The credentials do not authenticate the client the body names: RFC 6749 §5.2
            # invalid_client, as the SDK answers the same mismatch for client_secret_basic clients.
            await _send_error(
                send, 401, "invalid_client", "client_id does not match the Authorization header", challenge=True
            )
            return
        if not body_ids:
            kept = [(name, value) for name, value in form if name not in ("client_id", "client_secret")]
            body = urlencode([*kept, ("client_id", basic_id), ("client_secret", basic_secret)]).encode("ascii")
            headers = [(n, v) for n, v in headers if n != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            scope = {**scope, "headers": headers}
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
