"""The upstream IdP unreachable: at start-up one clear error naming it; later, OAuth errors
for the logins in flight while everything else keeps working."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest
from support.harness import integrated_server, pkce
from support.hostile_idp import HostileIdP
from support.net import EXAMPLES, free_port, serve_in_loop

from mcp_oidc_provider import ConfigurationError, OIDCProvider, ProviderSettings, UpstreamSettings


async def test_an_unreachable_idp_at_start_up_raises_one_error_naming_the_issuer() -> None:
    issuer = f"http://127.0.0.1:{free_port()}"
    provider = OIDCProvider(
        ProviderSettings(
            issuer_url="http://127.0.0.1:8000",
            upstream=UpstreamSettings(issuer=issuer, client_id="c", client_secret="s"),
        )
    )
    with pytest.raises(ConfigurationError) as raised:
        await provider.start()
    assert f"upstream IdP {issuer} is unreachable" in str(raised.value)
    await provider.aclose()


def test_the_example_server_exits_with_one_clear_line_when_the_idp_is_down() -> None:
    issuer = f"http://127.0.0.1:{free_port()}"
    env = {
        "PORT": str(free_port()),
        "UPSTREAM_ISSUER": issuer,
        "UPSTREAM_CLIENT_ID": "c",
        "UPSTREAM_CLIENT_SECRET": "very-secret-value",
    }
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "fastmcp_integrated" / "server.py")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"error: upstream IdP {issuer} is unreachable" in result.stderr
    assert "Traceback" not in result.stderr
    assert "very-secret-value" not in result.stderr + result.stdout


async def test_an_idp_that_goes_down_mid_login_gives_temporarily_unavailable_and_the_server_keeps_serving() -> None:
    idp = HostileIdP()
    idp_port = free_port()
    idp.issuer = f"http://127.0.0.1:{idp_port}"
    async with contextlib.AsyncExitStack() as idp_running:
        await idp_running.enter_async_context(serve_in_loop(idp.app(), idp_port))
        async with integrated_server(idp.issuer, client_id=idp.client_id, client_secret="s") as server:
            # Before the outage, a user logs in.
            client = await server.register()
            verifier, challenge = pkce()
            query = await server.follow_to_client(server.authorize_url(client, challenge), client.redirect_uri)
            tokens = (await server.redeem(client, query["code"], verifier)).json()

            # A second login gets a code from the IdP, which then goes down before we redeem it.
            _, challenge2 = pkce()
            async with httpx2.AsyncClient() as browser:
                upstream_url = await server.to_upstream(browser, client, challenge2, state="second")
                callback_url = (await browser.get(upstream_url)).headers["location"]
                await idp_running.aclose()
                response = await browser.get(callback_url)
            assert response.status_code == 302
            params = dict(parse_qsl(urlsplit(response.headers["location"]).query))
            assert params["error"] == "temporarily_unavailable"
            assert params["state"] == "second"
            assert "code" not in params

            # Everything else keeps working.
            _, challenge3 = pkce()
            assert (await server.http.get(server.authorize_url(client, challenge3))).status_code == 302
            assert (await server.http.get(server.base + "/health")).json() == {"status": "ok"}
            assert (await server.mcp(tokens["access_token"])).status_code == 200
