"""Every endpoint we add next to the SDK's auth routes.

==================================  ======  ==============================================
Path                                Method  Purpose
==================================  ======  ==============================================
``/oauth/callback`` (configurable)  GET     upstream redirect back (:mod:`.callback`)
``/.well-known/openid-configuration`` GET   OIDC Discovery 1.0 §3, same endpoints as RFC 8414
``/jwks``                           GET     our public signing keys (RFC 7517)
``/health``                         GET     liveness plus a store round trip
==================================  ======  ==============================================

The SDK serves ``/.well-known/oauth-authorization-server``, ``/authorize``, ``/token``,
``/register`` and ``/revoke``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from . import callback

if TYPE_CHECKING:
    from .provider import OIDCProvider

logger = logging.getLogger("mcp_oidc_provider.routes")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
JWKS_PATH = "/jwks"
HEALTH_PATH = "/health"
OIDC_DISCOVERY_PATH = "/.well-known/openid-configuration"


class ProviderRoutes:
    def __init__(self, provider: OIDCProvider) -> None:
        self.provider = provider

    def routes(self) -> list[Route]:
        return [
            Route(self.provider.settings.callback_path, self.callback, methods=["GET"]),
            Route(OIDC_DISCOVERY_PATH, self.openid_configuration, methods=["GET"]),
            Route(JWKS_PATH, self.jwks, methods=["GET"]),
            Route(HEALTH_PATH, self.health, methods=["GET"]),
        ]

    def install(self, server: Any) -> None:
        for route in self.routes():
            server.custom_route(route.path, methods=sorted(route.methods or {"GET"} - {"HEAD"}))(route.endpoint)

    async def callback(self, request: Request) -> Response:
        try:
            ctx = await self.provider.context()
            result = await callback.complete_login(ctx, dict(request.query_params))
        except Exception:
            logger.exception("callback failed unexpectedly")
            return JSONResponse(
                {"error": "server_error", "error_description": "The login could not be completed"},
                status_code=500,
                headers=NO_STORE,
            )
        if result.redirect_to is not None:
            return RedirectResponse(result.redirect_to, status_code=302, headers=NO_STORE)
        return JSONResponse(
            {"error": result.error, "error_description": result.error_description}, status_code=400, headers=NO_STORE
        )

    def discovery_document(self, algorithms: list[str]) -> dict[str, Any]:
        base = self.provider.issuer.rstrip("/")
        document = self.provider.sdk_metadata
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
        ctx = await self.provider.context()
        return JSONResponse(
            self.discovery_document(ctx.keys.algorithms),
            headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
        )

    async def jwks(self, request: Request) -> Response:
        ctx = await self.provider.context()
        return JSONResponse(
            ctx.keys.public_jwks(),
            headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
        )

    async def health(self, request: Request) -> Response:
        try:
            ctx = await self.provider.context()
            await ctx.repo.load_keys()
        except Exception:
            return JSONResponse({"status": "unavailable"}, status_code=503, headers=NO_STORE)
        return JSONResponse({"status": "ok"}, headers=NO_STORE)
