"""``POST /introspect``: RFC 7662 token introspection over HTTP (the checks: :mod:`..flows.introspection`).

The caller authenticates first, before anything about the token is looked at: without valid
credentials of a client allowed to introspect the answer is ``401 invalid_client`` with
``WWW-Authenticate: Basic`` (RFC 6749 §5.2), whatever the token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..core import audit
from ..flows.context import Context
from ..flows.introspection import ClientCredentials, authenticate_introspector, introspect
from ..store.failures import is_store_failure
from .basic_client_id import MalformedBasicCredentials, basic_credentials
from .errors import error_response
from .headers import NO_STORE

logger = logging.getLogger("mcp_oidc_provider.introspection")

INTROSPECTION_PATH = "/introspect"
MAX_BODY_BYTES = 16 * 1024
AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def introspection_metadata(issuer: str) -> dict[str, object]:
    """RFC 8414 §2 members announcing the endpoint."""
    return {
        "introspection_endpoint": issuer.rstrip("/") + INTROSPECTION_PATH,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
    }


class _Refused(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(error)
        self.status, self.error, self.description = status, error, description


async def _read_form(request: Request) -> dict[str, str]:
    # RFC 7662 §2.1: "application/x-www-form-urlencoded" in the POST body.
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise _Refused(400, "invalid_request", "The body must be application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _Refused(413, "invalid_request", "Request body too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Refused(400, "invalid_request", "Malformed form") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:  # RFC 6749 §3.1: parameters MUST NOT be repeated
            raise _Refused(400, "invalid_request", f"Repeated parameter {name}")
        form[name] = value
    return form


def _credentials(request: Request, form: dict[str, str]) -> ClientCredentials | None:
    header = request.headers.get("authorization")
    posted = "client_secret" in form
    if header is not None and posted:
        # RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request.
        raise _Refused(400, "invalid_request", "Use one client authentication method")
    if header is not None:
        try:
            basic = basic_credentials(list(request.headers.raw))
        except MalformedBasicCredentials:
            return None
        return ClientCredentials(*basic) if basic is not None else None
    if posted and "client_id" in form:
        return ClientCredentials(form["client_id"], form["client_secret"])
    return None


def _unauthorized(request: Request) -> Response:
    audit.emit("introspection.refused", reason="invalid_client")
    response = error_response(request, 401, "invalid_client", "Client authentication failed")
    response.headers["WWW-Authenticate"] = 'Basic realm="introspection", charset="UTF-8"'
    return response


def introspection_route(context: Callable[[], Awaitable[Context]]) -> Route:
    async def endpoint(request: Request) -> Response:
        try:
            form = await _read_form(request)
            credentials = _credentials(request, form)
        except _Refused as refused:
            return error_response(request, refused.status, refused.error, refused.description)
        try:
            ctx = await context()
            if authenticate_introspector(ctx, credentials) is None:
                return _unauthorized(request)
            token = form.get("token")
            if not token:
                return error_response(request, 400, "invalid_request", "The token parameter is required")
            answer = await introspect(ctx, token, form.get("token_type_hint"))
        except Exception as exc:
            logger.error("introspection failed: %s", type(exc).__name__)
            if is_store_failure(exc):
                return error_response(request, 503, "temporarily_unavailable", "The store is unavailable")
            return error_response(request, 500, "server_error", "Introspection failed")
        return JSONResponse(answer, headers=NO_STORE)

    return Route(INTROSPECTION_PATH, endpoint, methods=["POST"])
