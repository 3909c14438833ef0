"""An MCP server with real user login, in one process.

    python examples/fastmcp_integrated/server.py

Configuration: the environment, or ``--config FILE`` (TOML, same names; the environment wins);
``--help`` lists every variable (HOST, PORT, BASE_URL, UPSTREAM_*, STORE_URL, CONSENT...). Without
UPSTREAM_ISSUER an embedded development IdP starts on a free loopback port, so this runs on
a fresh machine with no account anywhere.

Works with mcp 2.x (``MCPServer``) and mcp 1.x (``FastMCP``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from key_value.aio.protocols import AsyncKeyValue
from mcp.server.auth.middleware.auth_context import get_access_token

from mcp_oidc_provider import OIDCProvider, ProviderSettings
from mcp_oidc_provider.run.env import EnvConfig, provider_variables
from mcp_oidc_provider.run.launch import command_line, run_from_env, transport_security, uvicorn_config
from mcp_oidc_provider.web.metrics import apply_operations_settings


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
    security = transport_security(config.base_url, config.host)
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
        return provider.mount(server_v1)
    server = MCPServer(name="whoami-demo", auth_server_provider=provider, auth=provider.auth_settings())
    for tool in (whoami, *extra_tools):
        server.tool()(tool)
    # Our routes, the SDK's app, and the HTTP-edge protections (limits, RFC 8707, 503 on outage).
    return provider.mount(server, streamable_http_path="/mcp", host=config.host, transport_security=security)


async def serve(config: EnvConfig, settings: ProviderSettings, store: AsyncKeyValue) -> None:
    provider = OIDCProvider(
        settings,
        store,
        jwks=config.jwks,
        secret_key=config.secret_key,
        encryption_keys=config.encryption_keys,
    )
    await provider.start()
    apply_operations_settings(settings, config.host)  # metrics_port, audit_json (issue 10)
    app = build_app(provider, config)
    print(f"MCP server with login: {config.base_url}/mcp", flush=True)
    print(f"  connect a client:   python examples/client.py {config.base_url}/mcp", flush=True)
    print(f"  or the Inspector:   npx @modelcontextprotocol/inspector  (URL {config.base_url}/mcp)", flush=True)
    server = uvicorn.Server(uvicorn_config(app, config.host, config.port, config.forwarded_allow_ips))
    try:
        await server.serve()
    finally:
        await provider.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    config_file = command_line(
        argv, "server.py", "An MCP server with user login, in one process.", provider_variables(), 8000
    )
    # Reads the environment; without UPSTREAM_ISSUER starts the development IdP (loudly).
    return run_from_env(serve, config_file=config_file)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
