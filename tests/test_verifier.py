"""OIDCTokenVerifier in-process: key fetching with a cool-down, and the upstream-token helper."""

from __future__ import annotations

import secrets
import time

import anyio
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


async def test_a_burst_of_unknown_key_ids_makes_at_most_one_jwks_refetch() -> None:
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
    # The first load, then one refetch for the first unknown kid; the others fall within
    # the one-per-second limit on unknown-kid refetches.
    assert len(fetches) <= 2


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


# issue 8 §5 / issue 12: key rotation in proxy mode


async def a_verifier_with_a_grant(
    store: MemoryStore, jwks: dict[str, object], key_refresh_seconds: float
) -> OIDCTokenVerifier:
    from mcp_oidc_provider.crypto.sealing import Sealer
    from mcp_oidc_provider.store.records import GrantRecord, PublicKeySet
    from mcp_oidc_provider.store.repository import Repository

    repo = Repository(store)
    repo.sealer = Sealer.derived(b"k" * 32)
    now = time.time()
    grant = GrantRecord(
        grant_id="g1", client_id="c", subject="alice", scopes=["mcp"], resource=RESOURCE, created_at=now
    )
    await repo.save_grant(grant.model_copy(update={"expires_at": now + 3600}), 3600)
    await repo.save_public_keys(PublicKeySet(jwks=jwks), 3600)
    return OIDCTokenVerifier(
        issuer=ISSUER,
        resource_url=RESOURCE,
        store=store,
        secret_key=b"k" * 32,
        # Nothing listens there: the keys come from the store alone.
        jwks_url=f"http://127.0.0.1:{free_port()}/jwks",
        key_refresh_seconds=key_refresh_seconds,
    )


ISSUER = "http://127.0.0.1:9/as"
RESOURCE = "http://127.0.0.1:9/mcp"


def signed_by(key: RSAKey) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": RESOURCE,
        "sub": "alice",
        "client_id": "c",
        "gid": "g1",
        "scope": "mcp",
        "iat": now,
        "exp": now + 600,
    }
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "at+jwt"}, claims, key)


def new_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"}, auto_kid=True)


async def test_a_key_retired_from_the_store_stops_being_trusted_within_the_refresh_interval() -> None:
    from mcp_oidc_provider.store.records import PublicKeySet
    from mcp_oidc_provider.store.repository import Repository

    old, current = new_key(), new_key()
    store = MemoryStore()
    jwks = {"keys": [current.as_dict(private=False), old.as_dict(private=False)]}
    verifier = await a_verifier_with_a_grant(store, jwks, key_refresh_seconds=0.5)
    try:
        by_old = signed_by(old)
        assert await verifier.verify_token(by_old) is not None  # cached from now on
        await Repository(store).save_public_keys(PublicKeySet(jwks={"keys": [current.as_dict(private=False)]}), 3600)
        retired_at = time.monotonic()
        while await verifier.verify_token(by_old) is not None:
            assert time.monotonic() - retired_at < 0.5 + 0.5, "the retired key is still trusted"
            await anyio.sleep(0.02)
        print(f"\nretired key refused after {(time.monotonic() - retired_at) * 1000:.0f} ms")
        assert await verifier.verify_token(signed_by(current)) is not None
    finally:
        await verifier.aclose()


async def test_a_new_key_is_accepted_on_its_first_token_even_right_after_another_new_key() -> None:
    from mcp_oidc_provider.store.records import PublicKeySet
    from mcp_oidc_provider.store.repository import Repository

    first = new_key()
    store = MemoryStore()
    verifier = await a_verifier_with_a_grant(store, {"keys": [first.as_dict(private=False)]}, key_refresh_seconds=3600)
    try:
        assert await verifier.verify_token(signed_by(first)) is not None
        published = [first]
        for _ in range(2):
            # Let the one-per-second limit on unknown-kid refetches pass between rotations.
            await anyio.sleep(1.05)
            published.insert(0, new_key())
            jwks = {"keys": [k.as_dict(private=False) for k in published]}
            await Repository(store).save_public_keys(PublicKeySet(jwks=jwks), 3600)
            assert await verifier.verify_token(signed_by(published[0])) is not None
    finally:
        await verifier.aclose()


async def test_the_same_unknown_key_id_is_refetched_at_most_once_per_cool_down() -> None:
    from mcp_oidc_provider.store.records import PublicKeySet
    from mcp_oidc_provider.store.repository import Repository

    known, stranger = new_key(), new_key()
    store = MemoryStore()
    verifier = await a_verifier_with_a_grant(store, {"keys": [known.as_dict(private=False)]}, key_refresh_seconds=3600)
    try:
        forged = signed_by(stranger)
        assert await verifier.verify_token(forged) is None
        await anyio.sleep(1.05)
        # Published now, but this kid already caused a refetch: refused until its cool-down ends
        # (or the periodic refresh), so one kid cannot make us refetch on every request.
        await Repository(store).save_public_keys(
            PublicKeySet(jwks={"keys": [known.as_dict(private=False), stranger.as_dict(private=False)]}), 3600
        )
        assert await verifier.verify_token(forged) is None
    finally:
        await verifier.aclose()
