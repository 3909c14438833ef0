"""OIDCTokenVerifier in-process: key fetching with a cool-down, and the upstream-token helper."""

from __future__ import annotations

import secrets
import time

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from key_value.aio.stores.memory import MemoryStore
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from support.harness import integrated_server
from support.hostile_idp import HostileIdP
from support.net import free_port, serve_in_loop

from mcp_oidc_provider import OIDCTokenVerifier
from mcp_oidc_provider.crypto.sealing import new_encryption_key


async def test_unknown_key_ids_make_at_most_one_jwks_fetch_per_cool_down() -> None:
    key = RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"}, auto_kid=True)
    fetches: list[float] = []

    async def jwks(request: Request) -> JSONResponse:
        fetches.append(time.monotonic())
        return JSONResponse({"keys": [key.as_dict(private=False)]})

    port = free_port()
    async with serve_in_loop(Starlette(routes=[Route("/jwks", jwks)]), port) as base:
        verifier = OIDCTokenVerifier(issuer=base, resource_url=base + "/mcp", store=MemoryStore(), secret_key=b"k" * 32)
        try:
            for _ in range(20):
                stranger = jwt.encode({"alg": "RS256", "kid": secrets.token_hex(8), "typ": "at+jwt"}, {"sub": "x"}, key)
                assert await verifier.verify_token(stranger) is None
        finally:
            await verifier.aclose()
    assert len(fetches) == 1


async def test_in_proxy_mode_a_tool_reads_the_upstream_tokens_the_auth_server_stored(idp: HostileIdP) -> None:
    store = MemoryStore()
    async with integrated_server(idp.issuer, client_id=idp.client_id, client_secret="s", store=store) as server:
        _, tokens = await server.warm_login()
        verifier = OIDCTokenVerifier(issuer=server.provider.issuer, resource_url=server.mcp_url, store=store)
        try:
            access = await verifier.verify_token(tokens["access_token"])
            assert access is not None
            assert access.subject == "mallory"
            assert access.claims is not None and access.claims["email"] == "mallory@example.test"
            upstream = await verifier.upstream_tokens_for(access)
        finally:
            await verifier.aclose()
    assert upstream is not None
    assert upstream.access_token == idp.issued[0]["access_token"]
    assert "access_token" not in repr(upstream) and idp.issued[0]["access_token"] not in repr(upstream)


async def test_a_verifier_without_the_auth_servers_sealing_key_refuses_tokens_and_says_why(
    idp: HostileIdP, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    async with integrated_server(
        idp.issuer, client_id=idp.client_id, client_secret="s", store=store, encryption_keys=new_encryption_key()
    ) as server:
        _, tokens = await server.warm_login()
        # The MCP server was given no ENCRYPTION_KEYS: it cannot open the grant.
        verifier = OIDCTokenVerifier(issuer=server.provider.issuer, resource_url=server.mcp_url, store=store)
        try:
            refused = await verifier.verify_token(tokens["access_token"])
        finally:
            await verifier.aclose()
    assert refused is None
    assert any("could not be decrypted" in r.getMessage() for r in caplog.records)
