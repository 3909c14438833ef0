"""Access ends when the IdP ends it (issue 8 §3), and the upstream-token vault refreshes once
for everyone (issue 11 item 3): against the strict IdP (npm ``oidc-provider`` as a Node
process), in integrated mode, in proxy mode, and across two processes sharing Redis."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
import redis.asyncio as aioredis
from key_value.aio.wrappers.prefix_collections import PrefixCollectionsWrapper
from support.harness import Harness, integrated_server
from support.net import free_port, run_process
from support.strict_idp import StrictIdP, run_strict_idp
from test_strict_idp import login_through_our_server

from mcp_oidc_provider import SystemClock, UpstreamSettings, generate_jwks, get_upstream_tokens, store_from_url
from mcp_oidc_provider.core.errors import UpstreamSessionEnded, UpstreamTemporarilyUnavailable
from mcp_oidc_provider.core.models import FederatedAccessToken
from mcp_oidc_provider.crypto.minting import new_grant_id
from mcp_oidc_provider.crypto.sealing import Sealer
from mcp_oidc_provider.store.records import GrantRecord
from mcp_oidc_provider.store.repository import Repository
from mcp_oidc_provider.upstream.client import UpstreamClient, tokens_from_response
from mcp_oidc_provider.upstream.vault import UpstreamTokenService

REDIS_URL = "redis://127.0.0.1:6379/10"
SERVER = Path(__file__).resolve().parent / "support" / "lifecycle_server.py"
SRC = Path(__file__).resolve().parents[1] / "src"
RECHECK = 1  # upstream_recheck_seconds in these tests: the bound on how long access outlives the IdP session


def upstream_token_tool() -> object:
    """A tool as the README shows it: the typed errors tell it what to say to the user."""

    async def upstream_token() -> str:
        try:
            tokens = await get_upstream_tokens()
        except UpstreamSessionEnded as exc:
            return json.dumps({"error": "session_ended", "message": exc.description})
        except UpstreamTemporarilyUnavailable as exc:
            return json.dumps({"error": "try_later", "message": exc.description})
        return json.dumps({"has_token": tokens is not None})

    return upstream_token


async def refresh(server: Harness, client_id: str, client_secret: str, token: str) -> httpx2.Response:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": token,
        "client_id": client_id,
        "client_secret": client_secret,
    }
    return await server.http.post(server.base + "/token", data=form)


async def call_tool_listed(server: Harness, access_token: str, name: str) -> tuple[bool, str]:
    """tools/call through the SDK client after tools/list (the client validates a result against
    the listed tools; once the tool ended the grant, a tools/list would itself be refused)."""
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
        await session.list_tools()
        result = await session.call_tool(name, {})
        is_error = getattr(result, "is_error", getattr(result, "isError", None))  # mcp 2.x / 1.x
        return bool(is_error), str(result.content[0].text)  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def logged_in(idp: StrictIdP, server: Harness, user: str) -> AsyncIterator[tuple[dict[str, str], str, str]]:
    """A login through our server; yields its token response and the client's credentials."""
    original = server.register
    registered: list[tuple[str, str]] = []

    async def register(*args: object, **kwargs: object) -> object:
        client = await original(*args, **kwargs)  # type: ignore[arg-type]
        registered.append((client.client_id, client.client_secret or ""))
        return client

    server.register = register  # type: ignore[method-assign]
    try:
        tokens = await login_through_our_server(server, idp, user)
    finally:
        server.register = original  # type: ignore[method-assign]
    yield tokens, registered[0][0], registered[0][1]


async def test_a_user_disabled_at_the_idp_loses_access_at_token_and_at_mcp_within_the_recheck_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "mcp_oidc_provider.audit")
    with run_strict_idp() as idp:
        async with (
            integrated_server(
                idp.issuer, client_id=idp.client_id, client_secret=idp.client_secret, upstream_recheck_seconds=RECHECK
            ) as server,
            logged_in(idp, server, "erin") as (tokens, client_id, secret),
        ):
            # Within the interval nothing is asked of the IdP and the refresh works.
            first = await refresh(server, client_id, secret, tokens["refresh_token"])
            assert first.status_code == 200, first.text
            assert idp.token_calls("refresh_token") == 0
            idp.disable_user("erin")
            disabled_at = time.monotonic()
            await anyio.sleep(RECHECK + 0.1)
            refused = await refresh(server, client_id, secret, first.json()["refresh_token"])
            # RFC 6749 §5.2: the grant is gone, so invalid_grant; and every token of it is refused.
            assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
            mcp = await server.mcp(first.json()["access_token"])
            ended_after = time.monotonic() - disabled_at
        last_idp_call = idp.token_log()[-1]
    print(f"\n[issue 8 §3] access ended {ended_after:.2f} s after the IdP disabled the user (interval {RECHECK} s)")
    assert mcp.status_code == 401
    assert ended_after < RECHECK + 2
    assert last_idp_call["detail"] == "refresh token invalid (referenced account not found)"
    assert "upstream.session_ended" in [r.getMessage() for r in caplog.records]


async def test_an_idp_outage_is_not_taken_for_a_disabled_user_and_the_grant_survives_it() -> None:
    with run_strict_idp() as idp:
        async with (
            integrated_server(
                idp.issuer,
                client_id=idp.client_id,
                client_secret=idp.client_secret,
                upstream_recheck_seconds=RECHECK,
                upstream_outage_grace_seconds=60,
            ) as server,
            logged_in(idp, server, "frank") as (tokens, client_id, secret),
        ):
            idp.outage(True)
            await anyio.sleep(RECHECK + 0.1)
            # Fail open inside the grace window: the IdP did not answer, it did not say no.
            during = await refresh(server, client_id, secret, tokens["refresh_token"])
            assert during.status_code == 200, during.text
            assert (await server.mcp(during.json()["access_token"])).status_code == 200
            idp.outage(False)
            after = await refresh(server, client_id, secret, during.json()["refresh_token"])
            assert after.status_code == 200, after.text
        log = idp.token_log()
    # One re-check met the outage, the next one (after the interval) went through.
    assert [c["error"] for c in log if c["grant_type"] == "refresh_token"] == ["outage", "outage", "outage", None]


async def test_past_the_outage_grace_a_refresh_is_refused_without_ending_the_grant_and_works_once_the_idp_is_back() -> (
    None
):
    with run_strict_idp() as idp:
        async with (
            integrated_server(
                idp.issuer,
                client_id=idp.client_id,
                client_secret=idp.client_secret,
                upstream_recheck_seconds=RECHECK,
                upstream_outage_grace_seconds=0,
            ) as server,
            logged_in(idp, server, "gina") as (tokens, client_id, secret),
        ):
            idp.outage(True, mode="close")
            await anyio.sleep(RECHECK + 0.1)
            refused = await refresh(server, client_id, secret, tokens["refresh_token"])
            assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
            assert (await server.mcp(tokens["access_token"])).status_code == 200  # not revoked
            idp.outage(False)
            # The refresh token was not consumed by the refused attempt.
            again = await refresh(server, client_id, secret, tokens["refresh_token"])
            assert again.status_code == 200, again.text


async def test_a_tool_asking_for_upstream_tokens_after_the_user_was_disabled_gets_a_clear_error_and_access_ends() -> (
    None
):
    with run_strict_idp(access_ttl=5) as idp:
        async with (
            integrated_server(
                idp.issuer,
                client_id=idp.client_id,
                client_secret=idp.client_secret,
                extra_tools=[upstream_token_tool()],
            ) as server,
            logged_in(idp, server, "hank") as (tokens, _, _),
        ):
            assert server.provider is not None
            access = await server.provider.load_access_token(tokens["access_token"])
            assert access is not None
            idp.disable_user("hank")
            with pytest.raises(UpstreamSessionEnded):
                await server.provider.upstream_tokens_for(access)
            # Through MCP: the grant is already revoked, so the bearer token itself is refused.
            assert (await server.mcp(tokens["access_token"])).status_code == 401


async def test_a_tool_gets_a_typed_session_ended_error_it_can_report_instead_of_an_internal_error() -> None:
    with run_strict_idp(access_ttl=5) as idp:
        async with (
            integrated_server(
                idp.issuer,
                client_id=idp.client_id,
                client_secret=idp.client_secret,
                extra_tools=[upstream_token_tool()],
            ) as server,
            logged_in(idp, server, "ivy") as (tokens, _, _),
        ):
            idp.disable_user("ivy")
            is_error, text = await call_tool_listed(server, tokens["access_token"], "upstream_token")
    assert not is_error
    assert json.loads(text) == {
        "error": "session_ended",
        "message": "The user's session at the identity provider has ended; sign in again",
    }


async def test_twenty_concurrent_tool_reads_with_upstream_tokens_shorter_than_the_margin_make_one_refresh() -> None:
    # 5 s upstream tokens are always inside our 30 s margin: before the fix every waiter of the
    # lock refreshed again (10 waiters, 10 refreshes).
    with run_strict_idp(access_ttl=5) as idp:
        async with (
            integrated_server(idp.issuer, client_id=idp.client_id, client_secret=idp.client_secret) as server,
            logged_in(idp, server, "jack") as (tokens, _, _),
        ):
            assert server.provider is not None
            access = await server.provider.load_access_token(tokens["access_token"])
            assert access is not None
            results: list[object] = []

            async def read() -> None:
                assert server.provider is not None and access is not None
                results.append(await server.provider.upstream_tokens_for(access))

            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(read)
            kept = await server.provider.context()
            found = await kept.repo.load_upstream(access.grant_id)
            refreshes = idp.token_calls("refresh_token")
            assert found is not None and found[0].refresh_token is not None
            # The rotated refresh token is the one kept: the IdP still takes it.
            reuse = idp.token(grant_type="refresh_token", refresh_token=found[0].refresh_token)
    assert refreshes == 1
    assert len({r.access_token for r in results}) == 1  # type: ignore[attr-defined]
    assert reuse.status_code == 200


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"test-upstream-session-{uuid.uuid4().hex[:12]}"
    yield prefix

    async def clean() -> None:
        raw = aioredis.Redis.from_url(REDIS_URL)
        async for key in raw.scan_iter(match=f"{prefix}__*"):
            await raw.delete(key)
        await raw.aclose()

    anyio.run(clean)


async def test_twenty_concurrent_tool_reads_in_two_processes_on_redis_make_one_upstream_refresh_and_keep_the_rotation(
    redis_prefix: str,
) -> None:
    secret_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    repo = Repository(PrefixCollectionsWrapper(store_from_url(REDIS_URL), redis_prefix))
    repo.sealer = Sealer.derived(base64.urlsafe_b64decode(secret_key + "=" * (-len(secret_key) % 4)))
    with run_strict_idp(access_ttl=32) as idp:
        callback = f"http://127.0.0.1:{free_port()}/cb"
        idp.allow_redirect_uri(callback)
        response = idp.code_flow(callback, "kate")
        now = time.time()
        grant = GrantRecord(
            grant_id=new_grant_id(),
            client_id="c",
            subject="kate",
            scopes=["mcp"],
            resource="http://127.0.0.1/mcp",
            upstream=tokens_from_response(response, now),
            created_at=now,
            expires_at=now + 600,
        )
        assert await repo.save_grant(grant, 600)
        start_at = time.time() + 4  # the other process needs time to import
        env = {
            **os.environ,
            "ROLE": "vault",
            "UPSTREAM_ISSUER": idp.issuer,
            "UPSTREAM_CLIENT_ID": idp.client_id,
            "UPSTREAM_CLIENT_SECRET": idp.client_secret,
            "STORE_URL": REDIS_URL,
            "COLLECTION_PREFIX": redis_prefix,
            "SECRET_KEY": secret_key,
            "GRANT_ID": grant.grant_id,
            "COUNT": "10",
            "START_AT": str(start_at),
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        }
        other = subprocess.Popen(  # noqa: ASYNC220 (started, then awaited in a thread)
            [sys.executable, str(SERVER)], env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            # Upstream tokens of 32 s: from 2 s of age on they are inside our 30 s margin.
            await anyio.sleep(max(0.0, start_at - time.time()))
            client = UpstreamClient(
                UpstreamSettings(issuer=idp.issuer, client_id=idp.client_id, client_secret=idp.client_secret),
                "http://127.0.0.1/unused",
                SystemClock(),
            )
            vault = UpstreamTokenService(repo, client, SystemClock())
            access = FederatedAccessToken(
                token="t", client_id="c", scopes=[], expires_at=int(time.time()) + 60, grant_id=grant.grant_id
            )
            ours: list[str] = []

            async def read() -> None:
                tokens = await vault.tokens_for(access)
                assert tokens is not None
                ours.append(tokens.access_token)

            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(read)
            await client.aclose()
            out, _ = await anyio.to_thread.run_sync(lambda: other.communicate(timeout=60))
        finally:
            if other.poll() is None:
                other.kill()
        theirs = json.loads(out.strip().splitlines()[-1])
        kept = await repo.load_upstream(grant.grant_id)
        assert kept is not None and kept[0].refresh_token
        reuse = idp.token(grant_type="refresh_token", refresh_token=kept[0].refresh_token)
        log = idp.token_log()
    refreshes = sum(c["grant_type"] == "refresh_token" for c in log) - 1  # minus our check just now
    print(f"\n[issue 11 §3] 20 concurrent reads in 2 processes: {refreshes} upstream refresh(es)")
    assert len(ours) == 10 and len(theirs) == 10
    assert len(set(ours) | set(theirs)) == 1  # everyone got the one refreshed token
    assert [(c["grant_type"], c["status"]) for c in log] == [
        ("authorization_code", 200),
        ("refresh_token", 200),  # the one refresh for twenty readers
        ("refresh_token", 200),  # ours just now, with the rotated refresh token we kept
    ]
    assert reuse.status_code == 200
    assert kept[1].generation == 1


@contextlib.contextmanager
def proxy_deployment(tmp: Path, idp: StrictIdP, prefix: str) -> Iterator[tuple[str, str]]:
    auth_port, mcp_port = free_port(), free_port()
    issuer, resource = f"http://127.0.0.1:{auth_port}", f"http://127.0.0.1:{mcp_port}/mcp"
    secret_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    common = {"STORE_URL": REDIS_URL, "COLLECTION_PREFIX": prefix, "SECRET_KEY": secret_key}
    auth_env = {
        **common,
        "ROLE": "auth",
        "PORT": str(auth_port),
        "UPSTREAM_ISSUER": idp.issuer,
        "UPSTREAM_CLIENT_ID": idp.client_id,
        "UPSTREAM_CLIENT_SECRET": idp.client_secret,
        "RESOURCE_URLS": resource,
        "JWKS": json.dumps(generate_jwks()),
        "PROVIDER_OVERRIDES": json.dumps({"upstream_recheck_seconds": RECHECK}),
    }
    mcp_env = {**common, "ROLE": "mcp", "PORT": str(mcp_port), "AUTH_ISSUER": issuer}
    with (
        run_process(SERVER, auth_env, issuer + "/health", tmp / "auth.log"),
        run_process(
            SERVER, mcp_env, f"http://127.0.0.1:{mcp_port}/.well-known/oauth-protected-resource/mcp", tmp / "mcp.log"
        ),
    ):
        yield issuer, resource


async def test_in_proxy_mode_a_user_disabled_at_the_idp_loses_access_at_the_auth_server_and_the_mcp_server(
    tmp_path: Path, redis_prefix: str
) -> None:
    with run_strict_idp() as idp, proxy_deployment(tmp_path, idp, redis_prefix) as (issuer, resource):
        async with httpx2.AsyncClient(timeout=15) as http:
            server = Harness(base=issuer, provider=None, store=None, http=http, resource=resource)
            async with logged_in(idp, server, "liam") as (tokens, client_id, secret):
                assert (await server.mcp(tokens["access_token"])).status_code == 200
                idp.disable_user("liam")
                await anyio.sleep(RECHECK + 0.1)
                refused = await refresh(server, client_id, secret, tokens["refresh_token"])
                assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
                # The MCP server, another process, refuses the access token within its
                # revocation_propagation_seconds (1 s, issue 12) plus a request's round trip.
                revoked_at = time.monotonic()
                while (await server.mcp(tokens["access_token"])).status_code != 401:
                    assert time.monotonic() - revoked_at < 1.5, "the MCP server still accepts the token"
                    await anyio.sleep(0.02)
