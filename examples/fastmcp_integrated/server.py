"""An MCP server with real user login, in one process.

    python examples/fastmcp_integrated/server.py

Configuration (environment): HOST, PORT, BASE_URL, UPSTREAM_ISSUER, UPSTREAM_CLIENT_ID,
UPSTREAM_CLIENT_SECRET, UPSTREAM_SCOPES, STORE_URL, JWKS (see the README's table). Without
UPSTREAM_ISSUER an embedded development IdP starts on a free loopback port, so this runs on
a fresh machine with no account anywhere.

Works with mcp 2.x (``MCPServer``) and mcp 1.x (``FastMCP``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.transport_security import TransportSecuritySettings

from mcp_oidc_provider import ConfigurationError, OIDCProvider, store_from_url
from mcp_oidc_provider.devidp import DEV_CLIENT_ID, DEV_CLIENT_SECRET, run_dev_idp
from mcp_oidc_provider.env import EnvConfig, load_env_config

logger = logging.getLogger("example")


def whoami() -> str:
    """Who is calling: the signed-in user, the client, its scopes and the user's claims."""
    token = get_access_token()
    if token is None:
        return json.dumps({"error": "not authenticated"})
    return json.dumps(
        {
            "sub": token.subject,
            "client_id": token.client_id,
            "scopes": token.scopes,
            "resource": token.resource,
            "claims": {k: v for k, v in (token.claims or {}).items() if k not in ("gid", "jti")},
        }
    )


def build_app(provider: OIDCProvider, config: EnvConfig, extra_tools: Sequence[Callable[..., Any]] = ()) -> Any:
    base = urlsplit(config.base_url)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[base.netloc, f"{config.host}:*", "127.0.0.1:*", "localhost:*"],
        allowed_origins=[f"{base.scheme}://{base.netloc}", "http://127.0.0.1:*", "http://localhost:*"],
    )
    try:
        from mcp.server.mcpserver import MCPServer  # mcp 2.x
    except ImportError:
        from mcp.server.fastmcp import FastMCP  # mcp 1.x

        server_v1 = FastMCP(
            name="whoami-demo",
            auth_server_provider=provider,
            auth=provider.auth_settings(),
            host=config.host,
            port=config.port,
            streamable_http_path="/mcp",
            transport_security=security,
        )
        for tool in (whoami, *extra_tools):
            server_v1.tool()(tool)
        provider.install(server_v1)
        return provider.protect(server_v1.streamable_http_app())
    server = MCPServer(name="whoami-demo", auth_server_provider=provider, auth=provider.auth_settings())
    for tool in (whoami, *extra_tools):
        server.tool()(tool)
    provider.install(server)
    app = server.streamable_http_app(streamable_http_path="/mcp", host=config.host, transport_security=security)
    # Rate and body limits on the auth endpoints; 503 rather than 401 when the store is down.
    return provider.protect(app)


async def serve(config: EnvConfig, upstream_issuer: str, client_id: str, client_secret: str | None) -> None:
    provider = OIDCProvider(
        config.provider_settings(upstream_issuer, client_id, client_secret),
        store_from_url(config.store_url),
        secret_key=config.secret_key,
    )
    await provider.start()
    app = build_app(provider, config)
    print(f"MCP server with login: {config.base_url}/mcp", flush=True)
    print(f"  connect a client:   python examples/client.py {config.base_url}/mcp", flush=True)
    print(f"  or the Inspector:   npx @modelcontextprotocol/inspector  (URL {config.base_url}/mcp)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning"))
    try:
        await server.serve()
    finally:
        await provider.aclose()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_env_config()
        with contextlib.ExitStack() as stack:
            if config.upstream_issuer is None:
                issuer = stack.enter_context(run_dev_idp())
                logger.warning("!!! UPSTREAM_ISSUER is not set: using the embedded DEVELOPMENT IdP at %s !!!", issuer)
                anyio.run(serve, config, issuer, DEV_CLIENT_ID, DEV_CLIENT_SECRET)
            else:
                assert config.upstream_client_id is not None
                anyio.run(
                    serve, config, config.upstream_issuer, config.upstream_client_id, config.upstream_client_secret
                )
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
