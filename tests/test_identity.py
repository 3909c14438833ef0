"""Identity in tools: the user from get_access_token(), custom claims, upstream IdP tokens."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import anyio
from support.harness import integrated_server
from support.hostile_idp import HostileIdP

from mcp_oidc_provider import get_upstream_tokens


async def upstream_token_fingerprint() -> str:
    """A test tool: which upstream access token the helper returns (hashed, never the token)."""
    tokens = await get_upstream_tokens()
    if tokens is None:
        return json.dumps({"tokens": None})
    return json.dumps(
        {"sha256": hashlib.sha256(tokens.access_token.encode()).hexdigest(), "has_refresh": bool(tokens.refresh_token)}
    )


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def login(server: Any) -> dict[str, Any]:
    _, tokens = await server.warm_login()
    return tokens


async def test_a_tool_gets_the_upstream_user_and_their_claims(idp: HostileIdP) -> None:
    async with integrated_server(idp.issuer, client_id=idp.client_id, client_secret="s") as server:
        tokens = await login(server)
        identity = await server.call_tool(tokens["access_token"], "whoami")
    assert identity["sub"] == "mallory"
    assert identity["claims"]["email"] == "mallory@example.test"
    # OIDC protocol claims of the upstream ID token are not the user's identity.
    assert "nonce" not in identity["claims"]
    assert identity["claims"]["iss"] != idp.issuer


async def test_a_claims_mapper_decides_what_is_kept_and_exposed(idp: HostileIdP) -> None:
    def only_domain(claims: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"sub": claims["sub"], "org": str(claims["email"]).split("@")[1]}

    async with integrated_server(
        idp.issuer, client_id=idp.client_id, client_secret="s", claims_mapper=only_domain
    ) as server:
        tokens = await login(server)
        identity = await server.call_tool(tokens["access_token"], "whoami")
    assert identity["claims"]["org"] == "example.test"
    assert "email" not in identity["claims"]


async def test_a_tool_gets_the_users_upstream_tokens(idp: HostileIdP) -> None:
    async with integrated_server(
        idp.issuer, client_id=idp.client_id, client_secret="s", extra_tools=[upstream_token_fingerprint]
    ) as server:
        tokens = await login(server)
        result = await server.call_tool(tokens["access_token"], "upstream_token_fingerprint")
    assert result == {"sha256": sha(idp.issued[0]["access_token"]), "has_refresh": True}


async def test_expiring_upstream_tokens_are_refreshed_once_for_concurrent_tool_calls(idp: HostileIdP) -> None:
    idp.access_token_lifetime = 5  # inside the refresh margin: the next use refreshes
    async with integrated_server(
        idp.issuer, client_id=idp.client_id, client_secret="s", extra_tools=[upstream_token_fingerprint]
    ) as server:
        tokens = await login(server)
        idp.access_token_lifetime = 3600
        results: list[dict[str, Any]] = []

        async def call() -> None:
            results.append(await server.call_tool(tokens["access_token"], "upstream_token_fingerprint"))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(call)
    assert idp.refreshes == 1
    assert {r["sha256"] for r in results} == {sha(idp.issued[-1]["access_token"])}


async def test_outside_a_request_there_are_no_upstream_tokens() -> None:
    assert await get_upstream_tokens() is None
