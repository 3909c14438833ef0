"""The authorization server on its own (proxy mode): ``mcp-oidc-provider serve``.

It serves the SDK's authorization-server routes (RFC 8414 metadata, /authorize, /token,
/register, /revoke) and ours (upstream callback, OIDC discovery, /jwks, /health). MCP servers
elsewhere verify its tokens with :class:`~mcp_oidc_provider.verifier.OIDCTokenVerifier` on
the same store. Configured from the environment and ``--config FILE`` (:mod:`.env`).
"""

from __future__ import annotations

import logging

import uvicorn
from key_value.aio.protocols import AsyncKeyValue
from mcp.server.auth.routes import create_auth_routes
from starlette.routing import Router
from starlette.types import ASGIApp

from ..core.settings import ProviderSettings
from ..provider import OIDCProvider
from ..web.error_boundary import ErrorBoundary
from ..web.metrics import apply_operations_settings
from .env import EnvConfig
from .launch import run_from_env, uvicorn_config

logger = logging.getLogger("mcp_oidc_provider.standalone")


def build_auth_app(provider: OIDCProvider) -> ASGIApp:
    auth = provider.auth_settings()
    sdk_routes = create_auth_routes(
        provider=provider,
        issuer_url=auth.issuer_url,
        client_registration_options=auth.client_registration_options,
        revocation_options=auth.revocation_options,
    )
    # A bare Router, not a Starlette app: Starlette's own error middleware would answer 500
    # before the boundary could.
    return ErrorBoundary(provider.protect(Router(routes=[*sdk_routes, *provider.routes().routes()])))


async def serve(config: EnvConfig, settings: ProviderSettings, store: AsyncKeyValue) -> None:
    provider = OIDCProvider(
        settings,
        store,
        jwks=config.jwks,
        secret_key=config.secret_key,
        encryption_keys=config.encryption_keys,
    )
    await provider.start()
    apply_operations_settings(settings, config.host)  # metrics_port, audit_json
    print(f"authorization server {provider.issuer} for {', '.join(provider.settings.resource_urls)}", flush=True)
    # uvicorn drains in-flight requests and exits on SIGTERM or SIGINT.
    server = uvicorn.Server(
        uvicorn_config(build_auth_app(provider), config.host, config.port, config.forwarded_allow_ips)
    )
    try:
        await server.serve()
    finally:
        await provider.aclose()


DEFAULT_PORT = 4001


def main(config_file: str | None = None) -> int:
    return run_from_env(serve, default_port=DEFAULT_PORT, config_file=config_file)
