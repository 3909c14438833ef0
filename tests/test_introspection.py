"""RFC 7662 token introspection at /introspect, over real HTTP, as a resource server in another
language would call it: authenticated as a static client marked for introspection."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx2
from support.harness import Harness, integrated_server
from support.hostile_idp import HostileIdP
from support.net import free_port

from mcp_oidc_provider import FrozenClock, StaticClient, generate_jwks
from mcp_oidc_provider.crypto.keys import SigningKeys
from mcp_oidc_provider.crypto.minting import mint_access_token

RS_ID, RS_SECRET = "resource-server", "rs-secret-value-0123456789"
INTROSPECTOR = StaticClient(
    client_id=RS_ID,
    client_secret=RS_SECRET,
    redirect_uris=(f"http://127.0.0.1:{free_port()}/unused",),
    introspection=True,
)
#: A first-party app with a secret but no right to introspect.
APP = StaticClient(
    client_id="plain-app", client_secret="app-secret-value", redirect_uris=(f"http://127.0.0.1:{free_port()}/cb",)
)


def server_for(idp: HostileIdP, **overrides: Any) -> Any:
    return integrated_server(
        idp.issuer, client_id=idp.client_id, client_secret="s", static_clients=(INTROSPECTOR, APP), **overrides
    )


async def introspect(server: Harness, token: str, auth: Any = (RS_ID, RS_SECRET), **form: str) -> httpx2.Response:
    return await server.http.post(server.base + "/introspect", data={"token": token, **form}, auth=auth)


def claims_of(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def test_a_live_access_token_is_active_with_its_scope_client_subject_audience_and_times(idp: HostileIdP) -> None:
    async with server_for(idp) as server:
        client, tokens = await server.warm_login()
        response = await introspect(server, tokens["access_token"])
        metadata = (await server.http.get(server.base + "/.well-known/oauth-authorization-server")).json()
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    claims = claims_of(tokens["access_token"])
    assert body["active"] is True
    assert body["client_id"] == client.client_id
    assert body["sub"] == claims["sub"]
    assert body["aud"] == server.mcp_url
    assert body["iss"] == server.base
    assert body["scope"] == "mcp"
    assert body["token_type"] == "Bearer"
    assert (body["exp"], body["iat"]) == (claims["exp"], claims["iat"])
    assert metadata["introspection_endpoint"] == server.base + "/introspect"
    assert metadata["introspection_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]


async def test_client_secret_post_works_as_well_as_basic(idp: HostileIdP) -> None:
    async with server_for(idp) as server:
        _, tokens = await server.warm_login()
        response = await introspect(server, tokens["access_token"], auth=None, client_id=RS_ID, client_secret=RS_SECRET)
    assert response.status_code == 200
    assert response.json()["active"] is True


async def test_a_token_revoked_at_the_revocation_endpoint_is_inactive(idp: HostileIdP) -> None:
    async with server_for(idp) as server:
        client, tokens = await server.warm_login()
        assert (await introspect(server, tokens["access_token"])).json()["active"] is True
        form = {"token": tokens["access_token"], "client_id": client.client_id, "client_secret": client.client_secret}
        revoked = await server.http.post(server.base + "/revoke", data=form)
        assert revoked.status_code == 200, revoked.text
        access = await introspect(server, tokens["access_token"])
        refresh = await introspect(server, tokens["refresh_token"], token_type_hint="refresh_token")
    # RFC 7662 §2.2: nothing but active=false for a token that is not active.
    assert access.json() == {"active": False}
    assert refresh.json() == {"active": False}


async def test_an_expired_access_token_is_inactive(idp: HostileIdP) -> None:
    clock = FrozenClock()
    async with server_for(idp, clock=clock) as server:
        _, tokens = await server.warm_login()
        assert (await introspect(server, tokens["access_token"])).json()["active"] is True
        clock.advance(3601)  # the one-hour lifetime
        response = await introspect(server, tokens["access_token"])
    assert response.status_code == 200
    assert response.json() == {"active": False}


async def test_a_jwt_with_our_claims_signed_by_another_key_is_inactive(idp: HostileIdP) -> None:
    async with server_for(idp) as server:
        _, tokens = await server.warm_login()
        real = claims_of(tokens["access_token"])
        # Same kid, issuer, audience, live grant id: only the key differs.
        foreign_jwks = generate_jwks("RS256")
        foreign_jwks["keys"][0]["kid"] = json.loads(
            base64.urlsafe_b64decode(tokens["access_token"].split(".")[0] + "==")
        )["kid"]
        forged, _ = mint_access_token(
            SigningKeys(foreign_jwks, b"k" * 32),
            issuer=real["iss"],
            subject=real["sub"],
            audience=real["aud"],
            client_id=real["client_id"],
            scopes=["mcp"],
            grant_id=real["gid"],
            issued_at=real["iat"],
            lifetime=3600,
        )
        forged_response = await introspect(server, forged)
        garbage = await introspect(server, "not-a-token-at-all")
    assert forged_response.json() == {"active": False}
    assert garbage.json() == {"active": False}


async def test_an_unauthenticated_caller_gets_401_and_learns_nothing_about_the_token(idp: HostileIdP) -> None:
    async with server_for(idp) as server:
        _, tokens = await server.warm_login()
        anonymous = await introspect(server, tokens["access_token"], auth=None)
        wrong_secret = await introspect(server, tokens["access_token"], auth=(RS_ID, "wrong-secret"))
        not_allowed = await introspect(server, tokens["access_token"], auth=("plain-app", "app-secret-value"))
        unknown = await introspect(server, tokens["access_token"], auth=("nobody", RS_SECRET))
        bearer = await server.http.post(
            server.base + "/introspect",
            data={"token": tokens["access_token"]},
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
    for response in (anonymous, wrong_secret, not_allowed, unknown, bearer):
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_client"
        assert response.headers["www-authenticate"].startswith("Basic")
        assert "active" not in response.text
        assert tokens["access_token"] not in response.text


async def test_a_refresh_token_is_active_until_rotated_away(idp: HostileIdP) -> None:
    async with server_for(idp) as server:
        client, tokens = await server.warm_login()
        before = await introspect(server, tokens["refresh_token"], token_type_hint="refresh_token")
        rotated = await server.token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        after = await introspect(server, tokens["refresh_token"])
        successor = await introspect(server, rotated.json()["refresh_token"])
    body = before.json()
    assert body["active"] is True
    assert body["client_id"] == client.client_id
    assert body["token_type"] == "refresh_token"
    assert body["scope"] == "mcp"
    assert after.json() == {"active": False}
    assert successor.json()["active"] is True


async def test_introspection_requests_without_a_token_or_with_a_bad_body_get_400(idp: HostileIdP) -> None:
    async with server_for(idp) as server:
        url = server.base + "/introspect"
        no_token = await server.http.post(url, data={}, auth=(RS_ID, RS_SECRET))
        json_body = await server.http.post(url, json={"token": "x"}, auth=(RS_ID, RS_SECRET))
        two_methods = await server.http.post(
            url, data={"token": "x", "client_id": RS_ID, "client_secret": RS_SECRET}, auth=(RS_ID, RS_SECRET)
        )
        huge = await server.http.post(url, data={"token": "x" * 100_000}, auth=(RS_ID, RS_SECRET))
        get = await server.http.get(url)
    assert (no_token.status_code, no_token.json()["error"]) == (400, "invalid_request")
    assert (json_body.status_code, json_body.json()["error"]) == (400, "invalid_request")
    assert (two_methods.status_code, two_methods.json()["error"]) == (400, "invalid_request")
    assert huge.status_code == 413
    assert get.status_code == 405
