"""Every endpoint we add next to the SDK's auth routes.

==================================  ======  ==============================================
Path                                Method  Purpose
==================================  ======  ==============================================
``/consent``                        GET     consent page, or straight upstream (:mod:`..flows.consent`)
``/consent``                        POST    the user's answer (CSRF-checked)
``/oauth/callback`` (configurable)  GET     upstream redirect back (:mod:`..flows.callback`)
``/.well-known/openid-configuration`` GET   OIDC Discovery 1.0 §3, same endpoints as RFC 8414
``/jwks``                           GET     our public signing keys (RFC 7517)
``/health``                         GET     liveness plus a store round trip
==================================  ======  ==============================================

The SDK serves ``/.well-known/oauth-authorization-server``, ``/authorize``, ``/token``,
``/register`` and ``/revoke``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..flows import callback, consent
from ..flows.authorize import CONSENT_PATH
from ..flows.context import Context
from .consent_page import SECURITY_HEADERS, consent_headers, render_page
from .errors import error_response
from .headers import NO_STORE

logger = logging.getLogger("mcp_oidc_provider.routes")

JWKS_PATH = "/jwks"
HEALTH_PATH = "/health"
OIDC_DISCOVERY_PATH = "/.well-known/openid-configuration"


class ProviderRoutes:
    """Our endpoints, given the flows' context and what the SDK publishes as its metadata."""

    def __init__(
        self,
        context: Callable[[], Awaitable[Context]],
        *,
        callback_path: str,
        issuer: str,
        consent_url: str,
        is_https: bool,
        sdk_metadata: dict[str, Any],
    ) -> None:
        self.context = context
        self.callback_path = callback_path
        self.issuer = issuer
        self.consent_url = consent_url
        self.is_https = is_https
        self.sdk_metadata = sdk_metadata

    def routes(self) -> list[Route]:
        return [
            Route(self.callback_path, self.callback, methods=["GET"]),
            Route(CONSENT_PATH, self.consent_page, methods=["GET"]),
            Route(CONSENT_PATH, self.consent_decision, methods=["POST"]),
            Route(OIDC_DISCOVERY_PATH, self.openid_configuration, methods=["GET"]),
            Route(JWKS_PATH, self.jwks, methods=["GET"]),
            Route(HEALTH_PATH, self.health, methods=["GET"]),
        ]

    def install(self, server: Any) -> None:
        for route in self.routes():
            server.custom_route(route.path, methods=sorted(route.methods or {"GET"} - {"HEAD"}))(route.endpoint)

    async def callback(self, request: Request) -> Response:
        try:
            ctx = await self.context()
            result = await callback.complete_login(
                ctx, dict(request.query_params), request.cookies.get(consent.binding_cookie_name(ctx.settings))
            )
        except Exception as exc:
            logger.error("callback failed unexpectedly: %s", type(exc).__name__)
            return error_response(request, 500, "server_error", "The login could not be completed")
        if result.redirect_to is not None:
            return RedirectResponse(result.redirect_to, status_code=302, headers=NO_STORE)
        return error_response(request, 400, result.error or "invalid_request", result.error_description or "")

    def _consent_response(self, request: Request, outcome: consent.ConsentResponse) -> Response:
        response: Response
        if outcome.location is not None:
            response = RedirectResponse(outcome.location, status_code=302, headers=SECURITY_HEADERS)
        elif outcome.prompt is not None:
            page = render_page(outcome.prompt, self.consent_url)
            response = HTMLResponse(page, status_code=outcome.status, headers=consent_headers(outcome.prompt))
        else:
            response = error_response(
                request, outcome.status, outcome.error or "invalid_request", outcome.error_description or ""
            )
        # __Host- cookies need Secure (RFC 6265bis §4.1.3.2); plain names only on loopback http.
        secure = self.is_https
        for cookie in outcome.cookies:
            response.set_cookie(
                cookie.name,
                cookie.value,
                max_age=cookie.max_age,
                httponly=True,
                secure=secure,
                samesite="lax",
                path="/",
            )
        return response

    async def consent_page(self, request: Request) -> Response:
        ctx = await self.context()
        outcome = await consent.open_consent(ctx, request.query_params.get("login"), request.cookies)
        return self._consent_response(request, outcome)

    async def consent_decision(self, request: Request) -> Response:
        ctx = await self.context()
        try:
            with anyio.fail_after(10):
                form = await request.form(max_files=0, max_fields=10)
        except Exception:
            return error_response(request, 400, "invalid_request", "Malformed form")
        fields = {k: v for k, v in form.items() if isinstance(v, str) and len(v) <= 256}
        return self._consent_response(request, await consent.decide(ctx, fields, request.cookies))

    def discovery_document(self, algorithms: list[str]) -> dict[str, Any]:
        base = self.issuer.rstrip("/")
        document = dict(self.sdk_metadata)
        document.update(
            {
                # OIDC Discovery §3: REQUIRED members; TS-based clients refuse the document without them.
                "jwks_uri": base + JWKS_PATH,
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": algorithms,
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
                "code_challenge_methods_supported": ["S256"],
                # RFC 9207 §3: we send iss on every authorization response.
                "authorization_response_iss_parameter_supported": True,
            }
        )
        return document

    async def openid_configuration(self, request: Request) -> Response:
        ctx = await self.context()
        return JSONResponse(
            self.discovery_document(ctx.keys.algorithms),
            headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
        )

    async def jwks(self, request: Request) -> Response:
        ctx = await self.context()
        return JSONResponse(
            ctx.keys.public_jwks(),
            headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
        )

    async def health(self, request: Request) -> Response:
        try:
            ctx = await self.context()
            await ctx.repo.load_keys()
        except Exception:
            return JSONResponse({"status": "unavailable"}, status_code=503, headers=NO_STORE)
        return JSONResponse({"status": "ok"}, headers=NO_STORE)
