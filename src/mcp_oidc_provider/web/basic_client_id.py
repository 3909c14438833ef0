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
from urllib.parse import parse_qsl, unquote, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

from .asgi import read_body, replaying
from .errors import send_error

#: The endpoints where the SDK authenticates a client from the form body.
CLIENT_AUTHENTICATED_PATHS = frozenset({"/token", "/revoke"})


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


#: RFC 6749 §5.2: a 401 answers with the scheme the client attempted.
BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="oauth"'}


def _is_form(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";")[0].strip().lower() == b"application/x-www-form-urlencoded"
    return False


class BasicClientIdMiddleware:
    """ASGI middleware: the SDK sees the Basic client id in the form body (RFC 6749 §2.3.1)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
            await send_error(send, 401, "invalid_client", "Malformed Basic authentication", BASIC_CHALLENGE)
            return
        if credentials is None or not _is_form(headers):
            await self.app(scope, receive, send)
            return

        # The body was already bounded by :mod:`.body_limit`, which runs first.
        body = await read_body(receive)
        if body is None:
            return  # the client went away
        try:
            form = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            await send_error(send, 400, "invalid_request", "The body must be form-urlencoded")
            return
        basic_id, basic_secret = credentials
        body_ids = [value for name, value in form if name == "client_id" and value]
        if any(name == "client_secret" and value for name, value in form):
            # RFC 6749 §2.3 / §5.2: one authentication method per request.
            await send_error(send, 400, "invalid_request", "Client credentials in both the header and the body")
            return
        if body_ids and body_ids != [basic_id]:
            # The credentials do not authenticate the client the body names: RFC 6749 §5.2
            # invalid_client, as the SDK answers the same mismatch for client_secret_basic clients.
            await send_error(
                send, 401, "invalid_client", "client_id does not match the Authorization header", BASIC_CHALLENGE
            )
            return
        if not body_ids:
            kept = [(name, value) for name, value in form if name not in ("client_id", "client_secret")]
            body = urlencode([*kept, ("client_id", basic_id), ("client_secret", basic_secret)]).encode("ascii")
            headers = [(n, v) for n, v in headers if n != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            scope = {**scope, "headers": headers}
        await self.app(scope, replaying(body, receive), send)
