"""An MCP server that trusts a separate authorization server (proxy mode).

    STORE_URL=redis://127.0.0.1:6379/0 AUTH_ISSUER=http://127.0.0.1:4001 \
        python examples/proxy_mode/mcp_server.py

Configuration (environment): HOST (127.0.0.1), PORT (8000), BASE_URL (http://HOST:PORT),
AUTH_ISSUER (the authorization server's base URL), STORE_URL (the store it uses), and the
authorization server's SECRET_KEY / ENCRYPTION_KEYS if it has them (grants are sealed). Tokens are
verified with the authorization server's keys and checked against the shared store for
revocation on every request. Works with mcp 2.x (``MCPServer``) and 1.x (``FastMCP``).
"""

from __future__ import annotations

import json
import os
import sys

import anyio
import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token

from mcp_oidc_provider import OIDCTokenVerifier, store_from_url
from mcp_oidc_provider.run.env import secret_key_from_env
from mcp_oidc_provider.run.launch import transport_security


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


async def serve() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    base_url = (os.environ.get("BASE_URL") or f"http://{host}:{port}").rstrip("/")
    issuer = os.environ.get("AUTH_ISSUER")
    if not issuer:
        print("error: AUTH_ISSUER (the authorization server's base URL) is required", file=sys.stderr)
        raise SystemExit(2)
    verifier = OIDCTokenVerifier(
        issuer=issuer,
        resource_url=base_url + "/mcp",
        store=store_from_url(os.environ.get("STORE_URL", "memory://")),
        secret_key=secret_key_from_env(),
        encryption_keys=os.environ.get("ENCRYPTION_KEYS") or None,
    )
    print(f"MCP server {base_url}/mcp trusting {issuer}", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(verifier, host, port, base_url), host=host, port=port, log_level="warning", proxy_headers=False
        )
    )
    try:
        await server.serve()
    finally:
        await verifier.aclose()


if __name__ == "__main__":
    anyio.run(serve)
