"""Each upstream preset against a local fake of its IdP: the authorization request the IdP
expects, and the user it logs in, as a tool sees them (``whoami``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2
import pytest
from key_value.aio.stores.memory import MemoryStore
from server import build_app  # examples/fastmcp_integrated/server.py
from support.fake_idps import TENANT_A, TENANT_B, FakeIdP, query_of, run_fake
from support.harness import Harness, pkce
from support.net import free_port, serve_in_loop

from mcp_oidc_provider import OIDCProvider, ProviderSettings, UpstreamSettings
from mcp_oidc_provider.run.env import load_env_config


@contextlib.asynccontextmanager
async def server_for(fake: FakeIdP, claims_mapper: Any = None, **upstream: Any) -> AsyncIterator[Harness]:
    port = free_port()
    config = load_env_config({"PORT": str(port)})
    upstream.setdefault("issuer", fake.issuer)
    settings = ProviderSettings(
        issuer_url=config.base_url,
        upstream=UpstreamSettings(client_id=fake.client_id, client_secret="our-secret", **upstream),
    )
    provider = OIDCProvider(settings, MemoryStore(), claims_mapper=claims_mapper)
    await provider.start()
    async with serve_in_loop(build_app(provider, config), port) as base, httpx2.AsyncClient(timeout=15) as http:
        try:
            yield Harness(base, provider, None, http)
        finally:
            await provider.aclose()


async def log_in(server: Harness) -> tuple[dict[str, str], dict[str, str]]:
    """As a browser with a warm IdP session: returns (the IdP's authorize query, the client's redirect query)."""
    client = await server.register()
    verifier, challenge = pkce()
    async with httpx2.AsyncClient(timeout=15) as browser:
        idp_url = await server.to_upstream(browser, client, challenge)
        response = await browser.get(idp_url)
        assert response.status_code == 302, response.text
        response = await browser.get(response.headers["location"])  # our callback
        assert response.status_code == 302, response.text
    back = query_of(response.headers["location"])
    if "code" in back:
        token = await server.redeem(client, back["code"], verifier)
        assert token.status_code == 200, token.text
        back["access_token"] = token.json()["access_token"]
    return query_of(idp_url), back


async def whoami(server: Harness, access_token: str) -> dict[str, Any]:
    return await server.call_tool(access_token, "whoami")


async def test_auth0_gets_the_audience_and_offline_access_and_maps_the_auth0_user() -> None:
    async with run_fake("auth0") as fake, server_for(fake, preset="auth0", audience="https://api.example.com") as s:
        sent, back = await log_in(s)
        me = await whoami(s, back["access_token"])
    assert sent["audience"] == "https://api.example.com"
    assert sent["scope"].split() == ["openid", "email", "profile", "offline_access"]
    assert sent["code_challenge_method"] == "S256" and sent["nonce"]
    assert "resource" not in sent
    assert me["sub"] == "auth0|64b1f0c2e1d3" and me["claims"]["email"] == "ada@example.com"
    assert fake.token_requests[0]["authorization"].startswith("Basic ")


@pytest.mark.parametrize("prefix", ["", "/oauth2/default"], ids=["org", "custom-authorization-server"])
async def test_okta_org_and_custom_authorization_servers_log_the_user_in(prefix: str) -> None:
    async with run_fake("okta", prefix) as fake, server_for(fake, preset="okta") as s:
        sent, back = await log_in(s)
        me = await whoami(s, back["access_token"])
    assert "offline_access" in sent["scope"].split()
    assert me["sub"] == "00u1abcdEFGHijkl5d7" and me["claims"]["preferred_username"] == "ada"
    assert fake.authorize_requests and fake.token_requests


async def test_keycloak_realm_issuer_logs_the_user_in() -> None:
    async with run_fake("keycloak", "/realms/acme") as fake, server_for(fake, preset="keycloak") as s:
        sent, back = await log_in(s)
        me = await whoami(s, back["access_token"])
    assert sent["scope"].split() == ["openid", "email", "profile"]
    assert me["sub"] == "f1c3a2b4-0000-4000-8000-000000000001"


async def test_entra_multi_tenant_admits_an_allowed_tenant_and_refuses_another() -> None:
    async with (
        run_fake("entra", "/organizations/v2.0") as fake,
        server_for(fake, preset="entra", allowed_tenants=(TENANT_A,)) as s,
    ):
        fake.tenant = TENANT_A
        sent, back = await log_in(s)
        me = await whoami(s, back["access_token"])
        fake.tenant = TENANT_B
        _, refused = await log_in(s)
    assert "resource" not in sent  # the MCP client sent one; Entra refuses it (AADSTS9010010)
    assert "offline_access" in sent["scope"].split()
    assert me["sub"] == "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ" and me["claims"]["tid"] == TENANT_A
    assert refused["error"] == "access_denied" and "code" not in refused


async def test_entra_multi_tenant_refuses_an_id_token_whose_issuer_is_not_its_own_tenant() -> None:
    async with run_fake("entra", "/common/v2.0") as fake, server_for(fake, preset="entra") as s:
        real_id_token = fake.id_token
        fake.id_token = lambda nonce: _entra_token_with_mismatched_issuer(fake, nonce)  # type: ignore[method-assign]
        _, refused = await log_in(s)
        fake.id_token = real_id_token  # type: ignore[method-assign]
        _, ok = await log_in(s)
    assert refused["error"] == "server_error" and "code" not in refused
    assert "code" in ok


def _entra_token_with_mismatched_issuer(fake: FakeIdP, nonce: str) -> str:
    import time

    from joserfc import jwt

    now = int(time.time())
    claims = {
        "sub": "x",
        "tid": TENANT_B,
        "iss": f"{fake.base}/{TENANT_A}/v2.0",
        "aud": fake.client_id,
        "iat": now,
        "exp": now + 600,
        "nonce": nonce,
    }
    return jwt.encode({"alg": "RS256", "kid": fake.key.kid}, claims, fake.key)


async def test_google_asks_for_offline_access_with_its_own_parameters_not_the_scope() -> None:
    async with (
        run_fake("google") as fake,
        server_for(
            fake,
            preset="google",
            scopes=("openid", "email", "offline_access"),
            extra_authorize_params={"hd": "example.com"},
            claims_mapper=lambda c: {"sub": c["sub"], "email": c["email"], "domain": c.get("hd")},
        ) as s,
    ):
        sent, back = await log_in(s)
        me = await whoami(s, back["access_token"])
    assert sent["scope"].split() == ["openid", "email"]
    assert (sent["access_type"], sent["prompt"], sent["hd"]) == ("offline", "consent", "example.com")
    assert me["sub"] == "110169484474386276334"
    assert me["claims"]["email"] == "ada@gmail.com" and me["claims"]["domain"] == "example.com"


async def test_clerk_never_asks_for_offline_access() -> None:
    async with (
        run_fake("clerk") as fake,
        server_for(fake, preset="clerk", scopes=("openid", "email", "profile", "offline_access")) as s,
    ):
        sent, back = await log_in(s)
        me = await whoami(s, back["access_token"])
    assert "offline_access" not in sent["scope"].split()
    assert me["sub"] == "user_2NNEqL2nrIRdJ194ndJqAHwEfxC"


async def test_github_logs_in_without_an_id_token_taking_the_email_from_the_emails_api() -> None:
    async with (
        run_fake("github") as fake,
        server_for(fake, preset="github", extra_authorize_params={"allow_signup": "false"}) as s,
    ):
        sent, back = await log_in(s)
        me = await whoami(s, back["access_token"])
    assert sent["scope"].split() == ["read:user", "user:email"]
    assert sent["code_challenge_method"] == "S256" and sent["allow_signup"] == "false"
    assert "nonce" not in sent
    assert me["sub"] == "583231"  # the numeric account id, which never changes (the login can)
    claims: Mapping[str, Any] = me["claims"]
    assert claims["email"] == "octocat@github.com" and claims["email_verified"] is True
    assert claims["preferred_username"] == "octocat"
    assert fake.token_requests[0]["accept"] == "application/json"
    assert [path for path, _ in fake.api_requests] == ["/api/v3/user", "/api/v3/user/emails"]


async def test_github_refuses_the_login_when_its_token_endpoint_refuses_the_code() -> None:
    async with run_fake("github") as fake, server_for(fake, preset="github") as s:
        _, back = await log_in_expecting_error(s, fake)
    assert back["error"] == "server_error" and "code" not in back


async def log_in_expecting_error(server: Harness, fake: FakeIdP) -> tuple[dict[str, str], dict[str, str]]:
    client = await server.register()
    _, challenge = pkce()
    async with httpx2.AsyncClient(timeout=15) as browser:
        idp_url = await server.to_upstream(browser, client, challenge)
        response = await browser.get(idp_url)
        callback = response.headers["location"]
        fake._pending.clear()  # the code is unknown when redeemed: GitHub answers 200 with an error body
        response = await browser.get(callback)
    return query_of(idp_url), query_of(response.headers["location"])
