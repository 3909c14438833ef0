"""Our server against a strict upstream IdP: npm ``oidc-provider`` as a real Node process.

Two halves: the IdP is strict (shown straight against it: PKCE, rotation, reuse revocation,
a disabled user, an outage), and our integrated server logs users in through it, keeps its
tokens for tools and refreshes them the way a strict IdP demands.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx2
import pytest
from support.harness import Harness, integrated_server, pkce
from support.net import free_port
from support.strict_idp import StrictIdP, pkce_pair, run_strict_idp

from mcp_oidc_provider import get_upstream_tokens


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def userinfo_tool(idp: StrictIdP) -> Callable[[], Any]:
    """A test tool: what the IdP's userinfo endpoint says about the upstream token a tool gets."""

    async def upstream_userinfo() -> str:
        tokens = await get_upstream_tokens()
        if tokens is None:
            return json.dumps({"tokens": None})
        async with httpx2.AsyncClient(timeout=5) as http:
            response = await http.get(idp.issuer + "/me", headers={"Authorization": f"Bearer {tokens.access_token}"})
        return json.dumps({"status": response.status_code, "userinfo": response.json()})

    return upstream_userinfo


async def login_through_our_server(server: Harness, idp: StrictIdP, user: str = "alice") -> dict[str, Any]:
    """A browser through our /authorize and consent, the IdP's login and consent, our callback;
    then the client at our /token. Returns our token response."""
    idp.allow_redirect_uri(server.base + "/oauth/callback")
    client = await server.register()
    verifier, challenge = pkce()
    async with httpx2.AsyncClient(follow_redirects=False, timeout=10) as browser:
        upstream_url = await server.to_upstream(browser, client, challenge)
        # OAuth 2.1 §4.1.1 / RFC 7636 §4.3: we send our own S256 challenge upstream; this IdP requires it.
        assert upstream_url.startswith(idp.issuer + "/auth?")
        assert query_of(upstream_url)["code_challenge_method"] == "S256"
        location = await anyio.to_thread.run_sync(idp.login_headlessly, upstream_url, user)
        assert location.startswith(server.base + "/oauth/callback?")
        assert query_of(location)["iss"] == idp.issuer  # RFC 9207 §2
        response = await browser.get(location)
    assert response.status_code == 302, response.text
    query = query_of(response.headers["location"])
    assert "code" in query, query
    response = await server.redeem(client, query["code"], verifier)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def call_tool_raw(server: Harness, access_token: str, name: str) -> tuple[bool, str]:
    """tools/call through the SDK client; (is_error, text), so a failing tool is observable."""
    from client import httpx  # the SDK's HTTP client module for this mcp major
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx.AsyncClient(headers={"Authorization": f"Bearer {access_token}"}, timeout=15)
        )
        streams = await stack.enter_async_context(streamable_http_client(server.mcp_url, http_client=http))
        session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
        await session.initialize()
        result = await session.call_tool(name, {})
        is_error = getattr(result, "is_error", getattr(result, "isError", None))  # mcp 2.x / 1.x
        return bool(is_error), str(result.content[0].text)  # type: ignore[union-attr]


# --- the IdP is strict ---------------------------------------------------------------------------


def test_the_strict_idp_refuses_a_login_without_pkce_and_a_code_with_the_wrong_verifier() -> None:
    with run_strict_idp() as idp:
        callback = f"http://127.0.0.1:{free_port()}/cb"
        idp.allow_redirect_uri(callback)

        # OAuth 2.1 §4.1.1: PKCE is required, so no code is issued without a challenge.
        location = idp.login_headlessly(idp.authorization_url(callback, None))
        assert query_of(location)["error"] == "invalid_request"
        assert "code" not in query_of(location)

        verifier, challenge = pkce_pair()
        code = query_of(idp.login_headlessly(idp.authorization_url(callback, challenge)))["code"]
        wrong, _ = pkce_pair()
        response = idp.token(grant_type="authorization_code", code=code, code_verifier=wrong, redirect_uri=callback)
        # RFC 7636 §4.6: a verifier that does not match the challenge is invalid_grant.
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
        assert idp.token_log()[-1]["detail"] == "code_verifier does not match code_challenge"

        wrong_redirect = idp.token(
            grant_type="authorization_code", code=code, code_verifier=verifier, redirect_uri=callback + "x"
        )
        assert wrong_redirect.json()["error"] == "invalid_grant"  # RFC 6749 §4.1.3: redirect_uri must match


def test_the_strict_idp_rotates_refresh_tokens_and_a_reused_one_revokes_the_grant() -> None:
    with run_strict_idp() as idp:
        callback = f"http://127.0.0.1:{free_port()}/cb"
        idp.allow_redirect_uri(callback)
        first = idp.code_flow(callback, "alice")
        assert first["refresh_token"]

        second = idp.token(grant_type="refresh_token", refresh_token=first["refresh_token"]).json()
        assert second["refresh_token"] != first["refresh_token"]  # rotated

        # RFC 9700 §4.14.2: the rotated-away token presented again is refused and ends the grant,
        # so the newest token of the same grant is dead too.
        reused = idp.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
        assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
        newest = idp.token(grant_type="refresh_token", refresh_token=second["refresh_token"])
        assert (newest.status_code, newest.json()["error"]) == (400, "invalid_grant")
        assert [c["detail"] for c in idp.token_log()[-2:]] == ["refresh token already used", "refresh token not found"]
        assert idp.token_calls("refresh_token") == 3
        assert idp.token_calls("authorization_code") == 1


def test_with_the_offline_access_policy_a_refresh_token_needs_offline_access_and_prompt_consent() -> None:
    with run_strict_idp(refresh_policy="offline_access") as idp:
        callback = f"http://127.0.0.1:{free_port()}/cb"
        idp.allow_redirect_uri(callback)
        assert "refresh_token" not in idp.code_flow(callback, scope="openid email")
        # OIDC Core §11: offline_access without prompt=consent is ignored, so still no refresh token.
        assert "refresh_token" not in idp.code_flow(callback, scope="openid offline_access")
        tokens = idp.code_flow(callback, scope="openid offline_access", prompt="consent")
        assert tokens["refresh_token"] and "offline_access" in tokens["scope"].split()


def test_a_user_disabled_at_the_strict_idp_can_no_longer_refresh_nor_log_in() -> None:
    with run_strict_idp() as idp:
        callback = f"http://127.0.0.1:{free_port()}/cb"
        idp.allow_redirect_uri(callback)
        tokens = idp.code_flow(callback, "bob")
        idp.disable_user("bob")
        response = idp.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
        assert idp.token_log()[-1]["detail"] == "refresh token invalid (referenced account not found)"
        # RFC 6749 §4.1.2.1: the login is refused with access_denied back to the client.
        _, challenge = pkce_pair()
        location = idp.login_headlessly(idp.authorization_url(callback, challenge), "bob")
        assert location.startswith(callback) and query_of(location)["error"] == "access_denied"
        assert "code" not in query_of(location)
        idp.enable_user("bob")
        assert idp.code_flow(callback, "bob")["access_token"]


def test_the_strict_idp_outage_answers_503_or_drops_the_connection_until_it_ends() -> None:
    with run_strict_idp() as idp:
        callback = f"http://127.0.0.1:{free_port()}/cb"
        idp.allow_redirect_uri(callback)
        tokens = idp.code_flow(callback)
        idp.outage(True)
        response = idp.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        assert (response.status_code, response.json()["error"]) == (503, "temporarily_unavailable")
        idp.outage(True, mode="close")
        with pytest.raises(httpx2.TransportError):
            idp.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        idp.outage(False)
        # The outage touched nothing: the refresh token still works once the IdP is back.
        assert idp.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 200
        assert [(c["status"], c["error"]) for c in idp.token_log()[-3:]] == [
            (503, "outage"),
            (0, "outage"),
            (200, None),
        ]
        assert idp.token_calls("refresh_token") == 3


# --- our server federating to it -------------------------------------------------------------------


async def test_a_login_through_our_server_at_the_strict_idp_gives_tools_the_users_live_upstream_tokens() -> None:
    with run_strict_idp() as idp:
        async with integrated_server(
            idp.issuer, client_id=idp.client_id, client_secret=idp.client_secret, extra_tools=[userinfo_tool(idp)]
        ) as server:
            tokens = await login_through_our_server(server, idp, "alice")
            identity = await server.call_tool(tokens["access_token"], "whoami")
            upstream = await server.call_tool(tokens["access_token"], "upstream_userinfo")
        assert identity["sub"] == "alice"
        assert identity["claims"]["email"] == "alice@example.test"
        # The token our grant holds is accepted by the IdP itself, for the same user.
        assert upstream == {
            "status": 200,
            "userinfo": {"sub": "alice", "email": "alice@example.test", "email_verified": True, "name": "Alice"},
        }
        assert idp.token_log() == [{"grant_type": "authorization_code", "status": 200, "error": None, "detail": None}]


async def test_concurrent_upstream_token_reads_make_one_refresh_at_the_strict_idp_and_keep_the_rotated_token() -> None:
    # Upstream access tokens of 32 s: 2 s old, one is inside our 30 s refresh margin; a fresh
    # one is not. (authlib stamps expires_at from the wall clock, so a fake clock cannot age it.)
    with run_strict_idp(access_ttl=32) as idp:
        async with integrated_server(idp.issuer, client_id=idp.client_id, client_secret=idp.client_secret) as server:
            assert server.provider is not None
            tokens = await login_through_our_server(server, idp)
            access = await server.provider.load_access_token(tokens["access_token"])
            assert access is not None
            await anyio.sleep(2.1)
            results: list[Any] = []

            async def read() -> None:
                assert server.provider is not None and access is not None
                results.append(await server.provider.upstream_tokens_for(access))

            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(read)
            assert idp.token_calls("refresh_token") == 1
            assert len({r.access_token for r in results}) == 1
            kept = await server.provider.upstream_tokens_for(access)
            assert kept is not None and kept.refresh_token is not None
        # The rotated refresh token is what the grant keeps: the IdP still takes it (a consumed
        # one would be refused as "already used" and end the grant).
        assert idp.token(grant_type="refresh_token", refresh_token=kept.refresh_token).status_code == 200
        assert [(c["grant_type"], c["status"]) for c in idp.token_log()] == [
            ("authorization_code", 200),
            ("refresh_token", 200),
            ("refresh_token", 200),
        ]


async def test_replaying_a_refresh_token_we_rotated_away_makes_the_strict_idp_end_the_grant() -> None:
    with run_strict_idp(access_ttl=5) as idp:
        async with integrated_server(idp.issuer, client_id=idp.client_id, client_secret=idp.client_secret) as server:
            assert server.provider is not None
            tokens = await login_through_our_server(server, idp)
            access = await server.provider.load_access_token(tokens["access_token"])
            assert access is not None
            # 5 s upstream tokens are always inside our 30 s margin: every read refreshes.
            first = await server.provider.upstream_tokens_for(access)  # refresh: R0 -> R1
            second = await server.provider.upstream_tokens_for(access)  # refresh: R1 -> R2
            assert first is not None and second is not None and first.refresh_token and second.refresh_token
            assert second.refresh_token != first.refresh_token

            # Someone replays R1, which our server rotated away: the IdP treats it as theft.
            stolen = idp.token(grant_type="refresh_token", refresh_token=first.refresh_token)
            assert (stolen.status_code, stolen.json()["error"]) == (400, "invalid_grant")
            assert idp.token_log()[-1]["detail"] == "refresh token already used"

            # Our next refresh (with R2) is refused: the whole upstream grant is gone. (What our
            # side does with that refusal is the xfail test at the end of this file.)
            await _attempt(server.provider.upstream_tokens_for(access))
        assert idp.token_log()[-1]["error"] == "invalid_grant"
        assert idp.token_log()[-1]["detail"] == "refresh token not found"


async def test_a_user_disabled_at_the_strict_idp_gets_invalid_grant_for_our_upstream_refresh() -> None:
    with run_strict_idp(access_ttl=5) as idp:
        async with integrated_server(
            idp.issuer, client_id=idp.client_id, client_secret=idp.client_secret, extra_tools=[userinfo_tool(idp)]
        ) as server:
            tokens = await login_through_our_server(server, idp, "carol")
            idp.disable_user("carol")
            is_error, text = await call_tool_raw(server, tokens["access_token"], "upstream_userinfo")
            mcp = await server.mcp(tokens["access_token"])
        refresh = [c for c in idp.token_log() if c["grant_type"] == "refresh_token"]
    assert refresh == [
        {
            "grant_type": "refresh_token",
            "status": 400,
            "error": "invalid_grant",
            "detail": "refresh token invalid (referenced account not found)",
        }
    ]
    # Today the tool fails ("Error executing tool", the xfail below) and our access token keeps
    # working at /mcp (200): ending access is issue 8 §3. Whatever the outcome, no secret leaks.
    assert mcp.status_code in (200, 401)
    assert tokens["access_token"] not in text and "refresh" not in text.lower()
    assert is_error or json.loads(text)["status"] == 401


async def test_an_upstream_invalid_grant_does_not_escape_from_upstream_tokens_for_as_an_exception() -> None:
    with run_strict_idp(access_ttl=5) as idp:
        async with integrated_server(idp.issuer, client_id=idp.client_id, client_secret=idp.client_secret) as server:
            assert server.provider is not None
            tokens = await login_through_our_server(server, idp, "dave")
            access = await server.provider.load_access_token(tokens["access_token"])
            assert access is not None
            idp.disable_user("dave")
            await server.provider.upstream_tokens_for(access)


async def _attempt(awaitable: Any) -> None:
    with contextlib.suppress(Exception):  # today an authlib OAuthError escapes (xfail above)
        await awaitable
