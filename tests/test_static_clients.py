"""Clients registered in configuration: first-party apps, optionally trusted to skip consent."""

from __future__ import annotations

import httpx2
import pytest
from pydantic import ValidationError
from support.harness import Client, integrated_server, pkce
from support.hostile_idp import HostileIdP
from support.net import free_port

from mcp_oidc_provider import ProviderSettings, StaticClient, UpstreamSettings

TRUSTED_URI = f"http://127.0.0.1:{free_port()}/cb"
OTHER_URI = f"http://127.0.0.1:{free_port()}/cb"


def static_clients() -> tuple[StaticClient, ...]:
    return (
        StaticClient(
            client_id="first-party",
            client_secret="s3cret-value",
            token_endpoint_auth_method="client_secret_post",
            redirect_uris=(TRUSTED_URI,),
            trusted=True,
        ),
        StaticClient(client_id="partner", client_name="Partner App", redirect_uris=(OTHER_URI,)),
    )


async def test_a_trusted_static_client_goes_to_the_idp_without_a_consent_page_and_authenticates_with_its_secret(
    idp: HostileIdP,
) -> None:
    async with integrated_server(
        idp.issuer, client_id=idp.client_id, client_secret="s", static_clients=static_clients()
    ) as server:
        client = Client("first-party", "s3cret-value", TRUSTED_URI)
        verifier, challenge = pkce()
        async with httpx2.AsyncClient() as browser:
            to_consent = await browser.get(server.authorize_url(client, challenge))
            straight = await browser.get(to_consent.headers["location"])
        assert straight.status_code == 302
        assert straight.headers["location"].startswith(idp.issuer + "/authorize")
        query = await server.follow_to_client(server.authorize_url(client, challenge), client.redirect_uri)
        good = await server.redeem(client, query["code"], verifier)
        assert good.status_code == 200, good.text
        assert (await server.mcp(good.json()["access_token"])).status_code == 200

        wrong = Client("first-party", "not-the-secret", TRUSTED_URI)
        query = await server.follow_to_client(server.authorize_url(wrong, challenge), wrong.redirect_uri)
        refused = await server.redeem(wrong, query["code"], verifier)
        assert refused.status_code == 401
        assert "access_token" not in refused.text


async def test_an_untrusted_static_client_still_gets_the_consent_page_with_its_name(idp: HostileIdP) -> None:
    async with integrated_server(
        idp.issuer, client_id=idp.client_id, client_secret="s", static_clients=static_clients()
    ) as server:
        client = Client("partner", None, OTHER_URI)
        _, challenge = pkce()
        async with httpx2.AsyncClient() as browser:
            to_consent = await browser.get(server.authorize_url(client, challenge))
            page = await browser.get(to_consent.headers["location"])
    assert page.status_code == 200
    assert "Partner App" in page.text


def test_a_static_client_with_a_forbidden_redirect_uri_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match=r"not allowed|loopback"):
        ProviderSettings(
            issuer_url="http://127.0.0.1:8000",
            upstream=UpstreamSettings(issuer="http://127.0.0.1:9", client_id="c", client_secret="s"),
            static_clients=(StaticClient(client_id="bad", redirect_uris=("javascript:alert(1)",)),),
        )


async def test_a_static_client_with_a_secret_uses_http_basic_by_default(idp: HostileIdP) -> None:
    uri = f"http://127.0.0.1:{free_port()}/cb"
    basic = StaticClient(client_id="basic-app", client_secret="basic-secret", redirect_uris=(uri,), trusted=True)
    assert basic.token_endpoint_auth_method == "client_secret_basic"
    async with integrated_server(
        idp.issuer, client_id=idp.client_id, client_secret="s", static_clients=(basic,)
    ) as server:
        client = Client("basic-app", None, uri)
        verifier, challenge = pkce()
        query = await server.follow_to_client(server.authorize_url(client, challenge), uri)
        form = {
            "grant_type": "authorization_code",
            "client_id": "basic-app",
            "code": query["code"],
            "code_verifier": verifier,
            "redirect_uri": uri,
        }
        in_body = await server.http.post(server.base + "/token", data={**form, "client_secret": "basic-secret"})
        basic_auth = await server.http.post(server.base + "/token", data=form, auth=("basic-app", "basic-secret"))
    assert in_body.status_code == 401  # RFC 6749 §2.3: one method per client
    assert basic_auth.status_code == 200, basic_auth.text
