"""Fast checks of the grant life cycle's building blocks (issue 8 §1, §4; issue 11 item 3), on the
in-memory store: the tombstone protocol under every interleaving we can force, the single-winner
lock tokens, the take-over after a vanished lock holder, the refresh rate limit."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from key_value.aio.stores.memory import MemoryStore
from key_value.aio.wrappers.base import BaseWrapper

from mcp_oidc_provider import ProviderSettings, SystemClock, UpstreamSettings
from mcp_oidc_provider.core.models import FederatedAccessToken, UpstreamTokens
from mcp_oidc_provider.crypto.sealing import Sealer
from mcp_oidc_provider.flows.grants import RefreshRateLimiter
from mcp_oidc_provider.store.records import GrantRecord, RevokedGrant
from mcp_oidc_provider.store.repository import Repository
from mcp_oidc_provider.upstream.vault import UpstreamTokenService

pytestmark = pytest.mark.unit


class Interleaving(BaseWrapper):
    """A store that runs ``hook`` once, right after the first put into ``collection``: a
    revocation landing between a writer's put and its tombstone check."""

    def __init__(self, key_value: Any, collection: str) -> None:
        self.key_value = key_value
        self.collection = collection
        self.hook: Any = None
        self.ops: list[tuple[str, str]] = []
        super().__init__()

    async def put(self, key: str, value: Any, *, collection: str | None = None, ttl: Any = None) -> None:
        self.ops.append(("put", collection or ""))
        await self.key_value.put(key, value, collection=collection, ttl=ttl)
        if collection == self.collection and self.hook is not None:
            hook, self.hook = self.hook, None
            await hook()

    async def delete(self, key: str, *, collection: str | None = None) -> bool:
        self.ops.append(("delete", collection or ""))
        return await self.key_value.delete(key, collection=collection)


def repository(kv: Any) -> Repository:
    repo = Repository(kv)
    repo.sealer = Sealer.derived(b"k" * 32)
    return repo


def grant(upstream: UpstreamTokens | None = None) -> GrantRecord:
    now = time.time()
    return GrantRecord(
        grant_id="g1",
        client_id="c",
        subject="alice",
        scopes=["mcp"],
        resource="https://mcp.example/mcp",
        claims={"email": "alice@example.test"},
        upstream=upstream,
        created_at=now,
        expires_at=now + 600,
    )


async def test_a_revocation_landing_between_a_grant_write_and_its_check_leaves_nothing_behind() -> None:
    kv = Interleaving(MemoryStore(), "mcp-oidc-grants")
    repo = repository(kv)
    kv.hook = lambda: repo.revoke_grant("g1", 3600, time.time())
    assert await repo.save_grant(grant(), 600) is False
    assert await repo.load_grant("g1") is None
    assert not await repo.grant_record_exists("g1")


async def test_a_revocation_landing_during_an_upstream_token_write_leaves_no_upstream_tokens() -> None:
    kv = Interleaving(MemoryStore(), "mcp-oidc-grant-upstream")
    repo = repository(kv)
    assert await repo.save_grant(grant(UpstreamTokens(access_token="a", refresh_token="r")), 600) is True
    kv.hook = lambda: repo.revoke_grant("g1", 3600, time.time())
    assert (
        await repo.save_upstream("g1", UpstreamTokens(access_token="b", refresh_token="r2"), 1, time.time(), 600)
        is False
    )
    assert await repo.load_upstream("g1") is None


async def test_a_write_after_a_completed_revocation_is_undone_and_the_revocation_writes_its_tombstone_first() -> None:
    kv = Interleaving(MemoryStore(), "none")
    repo = repository(kv)
    await repo.save_grant(grant(), 600)
    kv.ops.clear()
    assert await repo.revoke_grant("g1", 3600, time.time()) is True
    assert kv.ops[:2] == [("put", "mcp-oidc-revoked-grants"), ("delete", "mcp-oidc-grants")]
    assert await repo.save_grant(grant(), 600) is False
    assert not await repo.grant_record_exists("g1")


async def test_a_grant_record_left_by_a_crashed_writer_is_not_loaded_once_tombstoned() -> None:
    repo = repository(MemoryStore())
    await repo.save_grant(grant(), 600)
    await repo._revoked.put("g1", RevokedGrant(revoked_at=0), 60)
    assert await repo.grant_record_exists("g1")
    assert await repo.load_grant("g1") is None
    assert await repo.load_grant_and_upstream("g1") is None


async def test_exactly_one_of_many_concurrent_claimers_wins_an_upstream_lock_token() -> None:
    repo = repository(MemoryStore())
    await repo.save_grant(grant(UpstreamTokens(access_token="a", refresh_token="r")), 600)
    wins: list[bool] = []

    async def claim() -> None:
        wins.append(await repo.claim_upstream_lock("g1", 0, 0))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(claim)
    assert wins.count(True) == 1


class CountingIdP:
    """Stands in for the IdP's token endpoint (the end-to-end tests use a real one)."""

    def __init__(self) -> None:
        self.settings = SimpleNamespace(timeout_seconds=0.1)
        self.refreshes: list[str] = []

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        self.refreshes.append(refresh_token)
        await anyio.sleep(0.05)
        n = len(self.refreshes)
        return {"access_token": f"at{n}", "refresh_token": f"rt{n}", "expires_in": 5, "token_type": "Bearer"}


def access() -> FederatedAccessToken:
    return FederatedAccessToken(token="t", client_id="c", scopes=[], expires_at=int(time.time()) + 60, grant_id="g1")


async def test_waiters_accept_a_token_refreshed_during_their_wait_even_if_it_is_short_lived() -> None:
    repo = repository(MemoryStore())
    await repo.save_grant(
        grant(UpstreamTokens(access_token="a0", refresh_token="rt0", expires_at=time.time() + 1)), 600
    )
    idp = CountingIdP()
    vault = UpstreamTokenService(repo, idp, SystemClock())  # type: ignore[arg-type]
    got: list[str] = []

    async def read() -> None:
        tokens = await vault.tokens_for(access())
        assert tokens is not None
        got.append(tokens.access_token)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(read)
    assert idp.refreshes == ["rt0"]
    assert set(got) == {"at1"}
    stored = await repo.load_upstream("g1")
    assert stored is not None and stored[0].refresh_token == "rt1" and stored[1].generation == 1


async def test_a_lock_holder_that_vanished_is_taken_over_after_its_lock_period() -> None:
    repo = repository(MemoryStore())
    await repo.save_grant(
        grant(UpstreamTokens(access_token="a0", refresh_token="rt0", expires_at=time.time() + 1)), 600
    )
    assert await repo.claim_upstream_lock("g1", 0, 0)  # a holder that crashed before its lease
    idp = CountingIdP()
    vault = UpstreamTokenService(repo, idp, SystemClock(), lock_seconds=0.5)  # type: ignore[arg-type]
    started = time.monotonic()
    tokens = await vault.tokens_for(access())
    assert tokens is not None and tokens.access_token == "at1"
    assert 0.5 <= time.monotonic() - started < 3
    assert idp.refreshes == ["rt0"]


async def test_a_vault_write_never_lands_on_a_grant_revoked_during_the_upstream_call() -> None:
    repo = repository(MemoryStore())
    await repo.save_grant(
        grant(UpstreamTokens(access_token="a0", refresh_token="rt0", expires_at=time.time() + 1)), 600
    )
    idp = CountingIdP()
    original = idp.refresh

    async def refresh_then_revoked(token: str) -> dict[str, Any]:
        response = await original(token)
        await repo.revoke_grant("g1", 3600, time.time())
        return response

    idp.refresh = refresh_then_revoked  # type: ignore[method-assign]
    vault = UpstreamTokenService(repo, idp, SystemClock())  # type: ignore[arg-type]
    assert await vault.tokens_for(access()) is None
    assert await repo.load_upstream("g1") is None and not await repo.grant_record_exists("g1")


def test_the_refresh_rate_limit_refuses_the_refresh_over_the_limit_and_forgets_after_a_minute() -> None:
    limiter = RefreshRateLimiter(max_grants=2)
    assert [limiter.allow("g", 3, 100.0 + i) for i in range(4)] == [True, True, True, False]
    assert limiter.allow("g", 3, 161.0)  # the first one left the window
    assert limiter.allow("other", 3, 100.0) and limiter.allow("third", 3, 100.0)
    assert limiter.allow("g", 0, 100.0)  # 0: no limit


def test_a_tombstone_outlives_every_token_of_any_grant() -> None:
    settings = ProviderSettings(
        issuer_url="https://as.example",
        upstream=UpstreamSettings(issuer="https://idp.example", client_id="x", client_secret="s"),
        grant_max_lifetime=90 * 86400,
    )
    assert settings.tombstone_ttl >= max(settings.refresh_token_ttl, settings.grant_max_lifetime) + 86400
