"""The authorization server alone, for MCP servers that run elsewhere (proxy mode).

    STORE_URL=redis://127.0.0.1:6379/0 RESOURCE_URLS=http://127.0.0.1:8000/mcp \
        python examples/proxy_mode/auth_server.py

Same as ``mcp-oidc-provider serve``. Configuration (environment): HOST, PORT (default 4001),
BASE_URL, UPSTREAM_ISSUER, UPSTREAM_CLIENT_ID, UPSTREAM_CLIENT_SECRET, UPSTREAM_SCOPES,
STORE_URL, JWKS, RESOURCE_URLS (comma-separated MCP server URLs). Without UPSTREAM_ISSUER an
embedded development IdP starts. SIGTERM drains requests and exits.
"""

from mcp_oidc_provider.run.standalone import main

if __name__ == "__main__":
    raise SystemExit(main())
