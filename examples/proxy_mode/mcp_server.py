"""An MCP server that trusts a separate authorization server (proxy mode).

    STORE_URL=redis://127.0.0.1:6379/0 AUTH_ISSUER=http://127.0.0.1:4001 \
        python examples/proxy_mode/mcp_server.py

Configuration (environment, or ``--config FILE`` with the same names; ``--help`` lists them):
AUTH_ISSUER (the authorization server's base URL) and STORE_URL (the store it uses) are required;
HOST (127.0.0.1), PORT (8000), BASE_URL (http://HOST:PORT), FORWARDED_ALLOW_IPS, and the
authorization server's SECRET_KEY / ENCRYPTION_KEYS if it has them (grants are sealed). A store
that does not answer at start-up: one line, exit 2; missing keys are said at start-up. Tokens
are verified with the authorization server's keys and checked against the shared store for
revocation on every request. Works with mcp 2.x (``MCPServer``) and 1.x (``FastMCP``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

import anyio
import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token

from mcp_oidc_provider import ConfigurationError, OIDCTokenVerifier
from mcp_oidc_provider.run.env import ResourceServerConfig, load_resource_server_config, resource_server_variables
from mcp_oidc_provider.run.launch import (
    check_resource_server_keys,
    command_line,
    open_store,
    transport_security,
    uvicorn_config,
)

logger = logging.getLogger("proxy_mode.mcp_server")


def whoami() -> str:
    """Who is calling: the signed-in user, the client, its scopes and the user's claims."""
    token = get_access_token()
    if token is None:
        return json.dumps({"error": "not authenticated"})
    claims = {k: v for k, v in (token.claims or {}).items() if k not in ("gid", "jti")}
    return json.dumps(
        {
            "sub": token.subject,
            "client_id": token.client_id,
            "scopes": token.scopes,
            "resource": token.resource,
            "claims": claims,
        }
    )


def build_app(verifier: OIDCTokenVerifier, host: str, port: int, base_url: str):  # type: ignore[no-untyped-def]
    security = transport_security(base_url, host)
    try:
        from mcp.server.mcpserver import MCPServer  # mcp 2.x
    except ImportError:
        from mcp.server.fastmcp import FastMCP  # mcp 1.x

        server_v1 = FastMCP(
            name="whoami-proxy-demo",
            token_verifier=verifier,
            auth=verifier.auth_settings(),
            host=host,
            port=port,
            streamable_http_path="/mcp",
            transport_security=security,
        )
        server_v1.tool()(whoami)
        return verifier.mount(server_v1)
    server = MCPServer(name="whoami-proxy-demo", token_verifier=verifier, auth=verifier.auth_settings())
    server.tool()(whoami)
    # A store outage answers 503 (retry) rather than 401 (log in again).
    return verifier.mount(server, streamable_http_path="/mcp", host=host, transport_security=security)


async def serve(config: ResourceServerConfig) -> None:
    store = await open_store(config.store_url, config.store_timeout_seconds)
    verifier = OIDCTokenVerifier(
        issuer=config.auth_issuer,
        resource_url=config.base_url + "/mcp",
        store=store,
        secret_key=config.secret_key,
        encryption_keys=config.encryption_keys,
        revocation_propagation_seconds=config.revocation_propagation_seconds,
        key_refresh_seconds=config.key_refresh_seconds,
    )
    has_sealing_key = config.secret_key is not None or config.encryption_keys is not None
    for problem in await check_resource_server_keys(store, config.auth_issuer, has_sealing_key):
        logger.warning("%s", problem)
    print(f"MCP server {config.base_url}/mcp trusting {config.auth_issuer}", flush=True)
    app = build_app(verifier, config.host, config.port, config.base_url)
    server = uvicorn.Server(uvicorn_config(app, config.host, config.port, config.forwarded_allow_ips))
    try:
        await server.serve()
    finally:
        await verifier.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    config_file = command_line(
        argv, "mcp_server.py", "An MCP server trusting an authorization server.", resource_server_variables(), 8000
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        anyio.run(serve, load_resource_server_config(config_file=config_file))
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
