"""The MCP server bench_bearer.py measures, with or without login, in a process of its own.

    python bench/bench_server.py --port P [--auth --upstream-issuer URL [--store-url URL]
                                 [--redis-prefix PREFIX]] [--mode session|stateless]
    python bench/bench_server.py --port P --role ROLE ...

Roles (bench_e2e.py): ``noauth`` (the baseline), ``integrated`` (an :class:`OIDCProvider` in
front, wrapped in ``provider.protect()`` as examples/fastmcp_integrated/server.py does),
``auth-server`` (the authorization server alone, as ``mcp-oidc-provider serve`` builds it,
for the MCP servers in ``--resource-urls``) and ``proxy-mcp`` (the MCP server with an
:class:`OIDCTokenVerifier` on the auth server's store, wrapped in ``StoreOutageMiddleware``, as
examples/proxy_mode/mcp_server.py does). ``--auth`` alone is ``integrated`` without ``protect()``.

Both variants are built by this one function with the same options (name, tool, transport
security, JSON responses, log level); the only difference is ``auth_server_provider=`` and
``auth=`` with an :class:`OIDCProvider` configured as ``tests/support/harness.py`` does, plus
``provider.install()``. Works with mcp 2.x (``MCPServer``) and mcp 1.x (``FastMCP``).
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

import anyio
import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.transport_security import TransportSecuritySettings


def whoami() -> str:
    """Who is calling: the same tool as examples/fastmcp_integrated/server.py."""
    token = get_access_token()
    if token is None:
        # The unauthenticated baseline answers with a body of the same shape.
        return json.dumps(
            {"sub": None, "client_id": None, "scopes": [], "resource": None, "claims": {}, "error": "not authenticated"}
        )
    return json.dumps(
        {
            "sub": token.subject,
            "client_id": token.client_id,
            "scopes": token.scopes,
            "resource": token.resource,
            "claims": {k: v for k, v in (getattr(token, "claims", None) or {}).items() if k not in ("gid", "jti")},
        }
    )


def build_store(store_url: str, redis_prefix: str | None) -> Any:
    from mcp_oidc_provider import store_from_url

    store = store_from_url(store_url)
    if redis_prefix:
        # Every collection (hence every Redis key) this process writes starts with the prefix,
        # so the benchmark can delete exactly what it created.
        from key_value.aio.wrappers.prefix_collections import PrefixCollectionsWrapper

        store = PrefixCollectionsWrapper(store, prefix=redis_prefix)
    return store


def build_app(
    port: int, *, provider: Any | None, json_response: bool, stateless: bool, verifier: Any | None = None
) -> Any:
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"127.0.0.1:{port}", "127.0.0.1:*", "localhost:*"],
        allowed_origins=[f"http://127.0.0.1:{port}", "http://127.0.0.1:*", "http://localhost:*"],
    )
    auth_kwargs: dict[str, Any] = (
        {"auth_server_provider": provider, "auth": provider.auth_settings()} if provider is not None else {}
    )
    if verifier is not None:
        auth_kwargs = {"token_verifier": verifier, "auth": verifier.auth_settings()}
    try:
        from mcp.server.mcpserver import MCPServer  # type: ignore[import-not-found,unused-ignore]  # mcp 2.x
    except ImportError:
        from mcp.server.fastmcp import FastMCP  # type: ignore[attr-defined,unused-ignore]  # mcp 1.x

        server_v1 = FastMCP(
            name="whoami-bench",
            host="127.0.0.1",
            port=port,
            streamable_http_path="/mcp",
            json_response=json_response,
            stateless_http=stateless,
            transport_security=security,
            log_level="WARNING",
            **auth_kwargs,
        )
        server_v1.tool()(whoami)
        if provider is not None:
            provider.install(server_v1)
        return server_v1.streamable_http_app()
    server = MCPServer(name="whoami-bench", log_level="WARNING", **auth_kwargs)
    server.tool()(whoami)
    if provider is not None:
        provider.install(server)
    return server.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=json_response,
        stateless_http=stateless,
        host="127.0.0.1",
        transport_security=security,
    )


async def serve_role(args: argparse.Namespace) -> None:
    """The servers bench_e2e.py compares, each built as its example builds it."""
    from pydantic import SecretStr

    from mcp_oidc_provider import OIDCProvider, ProviderSettings, UpstreamSettings
    from mcp_oidc_provider.run.devidp import DEV_CLIENT_ID, DEV_CLIENT_SECRET

    base = f"http://127.0.0.1:{args.port}"
    stateless = args.mode == "stateless"
    provider: Any | None = None
    verifier: Any | None = None
    if args.role in ("integrated", "auth-server"):
        settings = ProviderSettings(
            issuer_url=base,
            resource_urls=tuple(args.resource_urls.split(",")) if args.resource_urls else (base + "/mcp",),
            upstream=UpstreamSettings(
                issuer=args.upstream_issuer, client_id=DEV_CLIENT_ID, client_secret=SecretStr(DEV_CLIENT_SECRET)
            ),
        )
        provider = OIDCProvider(settings, build_store(args.store_url, args.redis_prefix))
        await provider.start()
    if args.role == "noauth":
        app = build_app(args.port, provider=None, json_response=True, stateless=stateless)
    elif args.role == "integrated":
        app = provider.protect(build_app(args.port, provider=provider, json_response=True, stateless=stateless))  # type: ignore[union-attr]
    elif args.role == "auth-server":
        from mcp_oidc_provider.run.standalone import build_auth_app

        app = build_auth_app(provider)  # type: ignore[arg-type]
    else:
        from mcp_oidc_provider import OIDCTokenVerifier, StoreOutageMiddleware

        verifier = OIDCTokenVerifier(
            issuer=args.auth_issuer, resource_url=base + "/mcp", store=build_store(args.store_url, args.redis_prefix)
        )
        app = StoreOutageMiddleware(
            build_app(args.port, provider=None, json_response=True, stateless=stateless, verifier=verifier)
        )
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="on")
    try:
        await uvicorn.Server(config).serve()
    finally:
        if provider is not None:
            await provider.aclose()
        if verifier is not None:
            await verifier.aclose()


async def serve(args: argparse.Namespace) -> None:
    if args.role is not None:
        await serve_role(args)
        return
    provider = None
    if args.auth:
        from pydantic import SecretStr

        from mcp_oidc_provider import OIDCProvider, ProviderSettings, UpstreamSettings
        from mcp_oidc_provider.run.devidp import DEV_CLIENT_ID, DEV_CLIENT_SECRET

        base = f"http://127.0.0.1:{args.port}"
        settings = ProviderSettings(
            issuer_url=base,
            resource_urls=(base + "/mcp",),
            upstream=UpstreamSettings(
                issuer=args.upstream_issuer, client_id=DEV_CLIENT_ID, client_secret=SecretStr(DEV_CLIENT_SECRET)
            ),
        )
        provider = OIDCProvider(settings, build_store(args.store_url, args.redis_prefix))
        await provider.start()
    app = build_app(args.port, provider=provider, json_response=True, stateless=args.mode == "stateless")
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="on")
    try:
        await uvicorn.Server(config).serve()
    finally:
        if provider is not None:
            await provider.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--auth", action="store_true", help="put the OIDCProvider in front of /mcp")
    parser.add_argument("--upstream-issuer", help="the (development) IdP's issuer; required with --auth")
    parser.add_argument("--store-url", default="memory://")
    parser.add_argument("--redis-prefix", default=None, help="prefix for every collection this server writes")
    parser.add_argument("--mode", choices=("session", "stateless"), default="session")
    parser.add_argument("--role", choices=("noauth", "integrated", "auth-server", "proxy-mcp"), default=None)
    parser.add_argument("--resource-urls", default=None, help="auth-server: comma-separated MCP server URLs")
    parser.add_argument("--auth-issuer", default=None, help="proxy-mcp: the authorization server's issuer")
    args = parser.parse_args()
    if (args.auth or args.role in ("integrated", "auth-server")) and not args.upstream_issuer:
        parser.error("--auth, --role integrated and --role auth-server need --upstream-issuer")
    if args.role == "proxy-mcp" and not args.auth_issuer:
        parser.error("--role proxy-mcp needs --auth-issuer")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    anyio.run(serve, args)


if __name__ == "__main__":
    main()
