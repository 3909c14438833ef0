"""Bad input and hostile upstreams: each gets the right OAuth error, and no token is issued."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from support.harness import Harness, integrated_server, pkce
from support.hostile_idp import HostileIdP

from mcp_oidc_provider import FrozenClock


@pytest.fixture
def hostile(idp: HostileIdP) -> HostileIdP:
    return idp


@pytest.fixture
async def hostile_server(hostile: HostileIdP) -> AsyncIterator[Harness]:
    async with integrated_server(
        hostile.issuer, client_id=hostile.client_id, client_secret="hostile-secret"
    ) as harness:
        yield harness


def assert_no_token(response: httpx2.Response) -> None:
    assert "access_token" not in response.text
    assert "refresh_token" not in response.text


# /authorize and /token with unknown or wrong clients


async def test_an_unknown_client_at_authorize_gets_a_400_and_no_redirect(server: Harness) -> None:
    _, challenge = pkce()
    url = server.authorize_url(
        type("C", (), {"client_id": "no-such-client", "redirect_uri": "http://127.0.0.1:9/cb"})(),
        challenge,  # type: ignore[arg-type]
    )
    response = await server.http.get(url)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "location" not in response.headers


async def test_an_unknown_client_at_token_is_refused_as_invalid_client(server: Harness) -> None:
    response = await server.http.post(
        server.base + "/token",
        data={
            "grant_type": "authorization_code",
            "client_id": "no-such-client",
            "code": "x",
            "code_verifier": "y" * 43,
        },
    )
    assert response.status_code == 401
    assert response.json()["error"] in ("invalid_client", "unauthorized_client")
    assert_no_token(response)


async def test_a_wrong_client_secret_is_refused(server: Harness) -> None:
    client = await server.register()
    client.client_secret = "not-the-secret"
    response = await server.token(client, grant_type="refresh_token", refresh_token="whatever")
    assert response.status_code == 401
    assert_no_token(response)


# authorization codes


async def test_a_replayed_code_is_refused_and_the_tokens_issued_from_it_stop_working(server: Harness) -> None:
    client = await server.register()
    verifier, challenge = pkce()
    query = await server.browser_login(server.authorize_url(client, challenge), client.redirect_uri)
    first = await server.redeem(client, query["code"], verifier)
    assert first.status_code == 200
    tokens = first.json()
    assert (await server.mcp(tokens["access_token"])).status_code == 200

    replay = await server.redeem(client, query["code"], verifier)

    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert_no_token(replay)
    # RFC 6749 §4.1.2: the tokens issued from the replayed code are revoked.
    assert (await server.mcp(tokens["access_token"])).status_code == 401
    refresh = await server.token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refresh.json()["error"] == "invalid_grant"


async def test_a_wrong_pkce_verifier_gets_invalid_grant_and_no_token(server: Harness) -> None:
    client = await server.register()
    _, challenge = pkce()
    query = await server.browser_login(server.authorize_url(client, challenge), client.redirect_uri)
    wrong_verifier, _ = pkce()
    response = await server.redeem(client, query["code"], wrong_verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert_no_token(response)


async def test_a_code_redeemed_by_another_client_is_refused(server: Harness) -> None:
    victim, thief = await server.register(), await server.register()
    verifier, challenge = pkce()
    query = await server.browser_login(server.authorize_url(victim, challenge), victim.redirect_uri)
    thief.redirect_uri = victim.redirect_uri
    response = await server.redeem(thief, query["code"], verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert_no_token(response)


async def test_an_expired_code_gets_invalid_grant(hostile: HostileIdP) -> None:
    # Our server and the IdP share a clock two minutes behind: codes are born expired for the SDK.
    clock = FrozenClock(time.time() - 120)
    hostile.time_offset = -120
    async with integrated_server(hostile.issuer, client_id=hostile.client_id, client_secret="s", clock=clock) as server:
        client = await server.register()
        verifier, challenge = pkce()
        query = await server.follow_to_client(server.authorize_url(client, challenge), client.redirect_uri)
        response = await server.redeem(client, query["code"], verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert_no_token(response)


async def test_a_malformed_code_challenge_is_refused_at_authorize(server: Harness) -> None:
    client = await server.register()
    response = await server.http.get(server.authorize_url(client, "too-short"))
    assert response.status_code == 302
    assert "error=invalid_request" in response.headers["location"]
    assert "code=" not in response.headers["location"]


async def test_a_resource_we_do_not_serve_is_refused_at_authorize(server: Harness) -> None:
    client = await server.register()
    _, challenge = pkce()
    response = await server.http.get(server.authorize_url(client, challenge, resource="https://other.example/mcp"))
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(client.redirect_uri)
    assert "error=invalid_target" in location or "error=invalid_request" in location


# bearer tokens


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.",
        "x" * 20000,
    ],
)
async def test_a_garbage_bearer_token_gets_401_with_www_authenticate(server: Harness, token: str) -> None:
    response = await server.mcp(token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_no_bearer_token_gets_401_pointing_at_the_resource_metadata(server: Harness) -> None:
    response = await server.mcp(None)
    assert response.status_code == 401
    assert "resource_metadata=" in response.headers["www-authenticate"]


async def test_an_expired_access_token_gets_401(hostile: HostileIdP) -> None:
    clock = FrozenClock()
    async with integrated_server(hostile.issuer, client_id=hostile.client_id, client_secret="s", clock=clock) as server:
        client = await server.register()
        verifier, challenge = pkce()
        query = await server.follow_to_client(server.authorize_url(client, challenge), client.redirect_uri)
        tokens = (await server.redeem(client, query["code"], verifier)).json()
        assert (await server.mcp(tokens["access_token"])).status_code == 200
        clock.advance(3601)  # one-hour lifetime
        response = await server.mcp(tokens["access_token"])
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_an_access_token_with_a_tampered_payload_gets_401(server: Harness) -> None:
    import base64
    import json

    _, tokens = await server.login_and_redeem()
    header, payload, signature = tokens["access_token"].split(".")
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "root"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    response = await server.mcp(f"{header}.{forged}.{signature}")
    assert response.status_code == 401


# the upstream callback


async def test_a_tampered_upstream_state_gets_invalid_request_and_no_code(
    hostile: HostileIdP, hostile_server: Harness
) -> None:
    client = await hostile_server.register()
    _, challenge = pkce()
    async with httpx2.AsyncClient() as browser:
        upstream_url = await hostile_server.to_upstream(browser, client, challenge)
        tampered = upstream_url.replace("state=", "state=x")
        at_idp = await browser.get(tampered)
        callback = await browser.get(at_idp.headers["location"])
    assert callback.status_code == 400
    assert callback.json()["error"] == "invalid_request"
    assert "location" not in callback.headers
    assert "code" not in callback.json()


async def test_a_callback_replayed_after_success_is_refused(server: Harness) -> None:
    client = await server.register()
    _, challenge = pkce()
    async with httpx2.AsyncClient() as browser:
        upstream_url = await server.to_upstream(browser, client, challenge)
        # Log in at the IdP, stop at our callback URL, then use it twice in the same browser.
        at_idp = await browser.post(upstream_url, data={"sub": "alice"})
        url = at_idp.headers["location"]
        once = await browser.get(url)
        twice = await browser.get(url)
    assert once.status_code == 302 and "code=" in once.headers["location"]
    assert twice.status_code == 400
    assert twice.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "mode", ["wrong_nonce", "wrong_aud", "bad_signature", "wrong_iss", "expired", "no_id_token", "alg_none"]
)
async def test_a_bad_upstream_id_token_gives_the_client_server_error_and_no_code(
    hostile: HostileIdP, hostile_server: Harness, mode: str
) -> None:
    hostile.mode = mode
    client = await hostile_server.register()
    _, challenge = pkce()
    query = await hostile_server.follow_to_client(hostile_server.authorize_url(client, challenge), client.redirect_uri)
    assert query.get("error") == "server_error", query
    assert "code" not in query
    assert query["state"] == "client-state"
    assert query["iss"] == hostile_server.provider.issuer


async def test_a_good_upstream_id_token_logs_the_user_in(hostile: HostileIdP, hostile_server: Harness) -> None:
    client = await hostile_server.register()
    verifier, challenge = pkce()
    query = await hostile_server.follow_to_client(hostile_server.authorize_url(client, challenge), client.redirect_uri)
    assert "code" in query, query
    response = await hostile_server.redeem(client, query["code"], verifier)
    assert response.status_code == 200
    # We authenticated to the IdP with client_secret_basic (RFC 6749 §2.3.1) and sent our own PKCE.
    sent = hostile.token_requests[-1]
    assert sent["authorization"].startswith("Basic ")
    assert "client_secret" not in sent
    assert len(sent["code_verifier"]) >= 43
    asked = hostile.authorize_requests[-1]
    assert asked["code_challenge_method"] == "S256" and asked["nonce"] and asked["state"]


async def test_a_user_who_denies_at_the_idp_gets_access_denied(server: Harness) -> None:
    client = await server.register()
    _, challenge = pkce()
    query = await server.browser_login(server.authorize_url(client, challenge), client.redirect_uri, action="deny")
    assert query["error"] == "access_denied"
    assert query["state"] == "client-state"
    assert "code" not in query


@pytest.mark.parametrize(
    ("upstream_error", "expected"),
    [
        ("access_denied", "access_denied"),
        ("login_required", "access_denied"),
        ("server_error", "server_error"),
        ("temporarily_unavailable", "temporarily_unavailable"),
    ],
)
async def test_an_idp_error_reaches_the_client_as_an_oauth_error(
    hostile: HostileIdP, hostile_server: Harness, upstream_error: str, expected: str
) -> None:
    hostile.authorize_error = upstream_error
    client = await hostile_server.register()
    _, challenge = pkce()
    query = await hostile_server.follow_to_client(hostile_server.authorize_url(client, challenge), client.redirect_uri)
    assert query["error"] == expected
    assert "code" not in query


async def test_an_idp_token_endpoint_failure_gives_server_error(hostile: HostileIdP, hostile_server: Harness) -> None:
    hostile.token_status = 500
    client = await hostile_server.register()
    _, challenge = pkce()
    query = await hostile_server.follow_to_client(hostile_server.authorize_url(client, challenge), client.redirect_uri)
    assert query["error"] == "server_error"
    assert "code" not in query
