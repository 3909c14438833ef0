"""The authorization server on its own (proxy mode): ``mcp-oidc-provider serve``.

It serves the SDK's authorization-server routes (RFC 8414 metadata, /authorize, /token,
/register, /revoke) and ours (upstream callback, OIDC discovery, /jwks, /health). MCP servers
elsewhere verify its tokens with :class:`~mcp_oidc_provider.verifier.OIDCTokenVerifier` on
the same store. Configured from the environment (:mod:`.env`) plus ``RESOURCE_URLS``.
"""

from __future__ import annotations

import logging

import uvicorn
from mcp.server.auth.routes import create_auth_routes
from starlette.responses import JSONResponse
from starlette.routing import Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .env import EnvConfig
from .launch import run_from_env
from .provider import OIDCProvider
from .routes import ProviderRoutes
from .settings import ProviderSettings
from .store import store_from_url

logger = logging.getLogger("mcp_oidc_provider.standalone")


class ErrorBoundary:
    """Unexpected failures (typically the store unreachable) become a JSON OAuth error.

    RFC 6749 §5.2 has no code for "try later" at the token endpoint; we answer
    ``503 temporarily_unavailable`` with ``Retry-After`` (as §4.1.2.1 does for /authorize),
    log one line naming the exception type, and never send a traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            logger.error("request to %s failed: %s", scope.get("path"), type(exc).__name__)
            if started:
                raise
            response = JSONResponse(
                {"error": "temporarily_unavailable", "error_description": "The authorization server is unavailable"},
                status_code=503,
                headers={"Retry-After": "2", "Cache-Control": "no-store"},
            )
            await response(scope, receive, send)


def build_auth_app(provider: OIDCProvider) -> ASGIApp:
    auth = provider.auth_settings()
    routes = create_auth_routes(
        provider=provider,
        issuer_url=auth.issuer_url,
        client_registration_options=auth.client_registration_options,
        revocation_options=auth.revocation_options,
    )
    # A bare Router, not a Starlette app: Starlette's own error middleware would answer 500
    # before the boundary could.
    return ErrorBoundary(provider.protect(Router(routes=[*routes, *ProviderRoutes(provider).routes()])))


async def serve(config: EnvConfig, settings: ProviderSettings) -> None:
    provider = OIDCProvider(settings, store_from_url(config.store_url), secret_key=config.secret_key)
    await provider.start()
    print(f"authorization server {provider.issuer} for {', '.join(provider.settings.resource_urls)}", flush=True)
    # uvicorn drains in-flight requests and exits on SIGTERM or SIGINT.
    server = uvicorn.Server(
        uvicorn.Config(
            build_auth_app(provider), host=config.host, port=config.port, log_level="warning", proxy_headers=False
        )
    )
    try:
        await server.serve()
    finally:
        await provider.aclose()


def main() -> int:
    return run_from_env(serve, default_port=4001)
