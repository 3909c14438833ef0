"""Issue 12: the bearer check answers from memory, and revocation, grant expiry and
``grant_max_lifetime`` still bound what it answers (memory store, frozen clocks)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from key_value.aio.stores.memory import MemoryStore
from key_value.aio.wrappers.base import BaseWrapper

from mcp_oidc_provider import bearer
from mcp_oidc_provider.core.clock import FrozenClock
from mcp_oidc_provider.crypto.keys import SigningKeys, generate_jwks
from mcp_oidc_provider.crypto.sealing import Sealer
from mcp_oidc_provider.store import repository as repository_module
from mcp_oidc_provider.store.records import GrantRecord
from mcp_oidc_provider.store.repository import Repository

pytestmark = pytest.mark.unit

ISSUER = "https://as.example"
RESOURCE = "https://mcp.example/mcp"
KEYS = SigningKeys(generate_jwks("ES256"), b"s" * 32)


class CountingStore(BaseWrapper):
    """Counts reads per collection; runs ``after_grant_read`` once after a grant's tombstone read."""

    def __init__(self, key_value: Any) -> None:
        self.key_value = key_value
        self.reads: list[str] = []
        self.after_grant_read: Any = None
        self.fail_reads = False
        super().__init__()

    async def _read(self, collection: str | None) -> None:
        self.reads.append(collection or "")
        if self.fail_reads:
            raise ConnectionError("store down")

    async def get(self, key: str, *, collection: str | None = None) -> Any:
        await self._read(collection)
        found = await self.key_value.get(key, collection=collection)
        if collection == "mcp-oidc-revoked-grants" and self.after_grant_read is not None:
            hook, self.after_grant_read = self.after_grant_read, None
            await hook()
        return found

    async def ttl(self, key: str, *, collection: str | None = None) -> Any:
        await self._read(collection)
        return await self.key_value.ttl(key, collection=collection)


class Ticker:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def new_repo(kv: Any) -> Repository:
    repo = Repository(kv)
    repo.sealer = Sealer.derived(b"k" * 32)
    return repo


async def a_grant(repo: Repository, now: float, *, expires_at: float | None, grant_id: str = "g1") -> None:
    record = GrantRecord(
        grant_id=grant_id,
        client_id="c",
        subject="alice",
        scopes=["mcp"],
        resource=RESOURCE,
        claims={"email": "alice@example.test"},
        created_at=now,
        expires_at=expires_at,
    )
    await repo.save_grant(record, 86400)


def a_token(now: float, *, grant_id: str = "g1", lifetime: int = 3600) -> str:
    claims = {
        "iss": ISSUER,
        "aud": RESOURCE,
        "sub": "alice",
        "client_id": "c",
        "gid": grant_id,
        "scope": "mcp",
        "iat": int(now),
        "exp": int(now) + lifetime,
        "jti": f"{grant_id}-{now}",
    }
    return KEYS.sign(claims, "at+jwt")


async def check(cache: bearer.BearerCache, repo: Repository, token: str, now: float) -> Any:
    return await bearer.verify_access_token(
        KEYS, repo, token, issuer=ISSUER, audiences=(RESOURCE,), now=now, cache=cache
    )


def other_process(cache: bearer.BearerCache) -> bearer.BearerCache:
    """This cache no longer hears this process's revocations, as if it ran elsewhere."""
    repository_module._revocation_listeners.discard(cache)
    return cache


async def test_a_token_seen_before_is_checked_without_any_store_read() -> None:
    kv = CountingStore(MemoryStore())
    repo, clock = new_repo(kv), FrozenClock()
    await a_grant(repo, clock.now(), expires_at=clock.now() + 86400)
    cache = bearer.BearerCache(repo, propagation_seconds=1.0, monotonic=Ticker())
    token = a_token(clock.now())
    first = await check(cache, repo, token, clock.now())
    assert first is not None and first.claims is not None and first.claims["email"] == "alice@example.test"
    kv.reads.clear()
    for _ in range(200):
        access = await check(cache, repo, token, clock.now())
        assert access is not None and access.subject == "alice" and access.resource == RESOURCE
    assert kv.reads == []


async def test_the_revoking_process_refuses_the_token_at_once() -> None:
    repo, clock = new_repo(MemoryStore()), FrozenClock()
    await a_grant(repo, clock.now(), expires_at=clock.now() + 86400)
    cache = bearer.BearerCache(repo, propagation_seconds=60.0, monotonic=Ticker())
    token = a_token(clock.now())
    assert await check(cache, repo, token, clock.now()) is not None
    await repo.revoke_grant("g1", 3600, clock.now())
    assert await check(cache, repo, token, clock.now()) is None


async def test_another_process_refuses_the_token_once_the_interval_has_passed_and_never_serves_it_again() -> None:
    kv = CountingStore(MemoryStore())
    repo, clock, ticker = new_repo(kv), FrozenClock(), Ticker()
    await a_grant(repo, clock.now(), expires_at=clock.now() + 86400)
    elsewhere = other_process(bearer.BearerCache(new_repo(kv), propagation_seconds=1.0, monotonic=ticker))
    token = a_token(clock.now())
    assert await check(elsewhere, repo, token, clock.now()) is not None
    await repo.revoke_grant("g1", 3600, clock.now())
    # Within the interval the other process may still answer from memory...
    ticker.now += 0.5
    assert await check(elsewhere, repo, token, clock.now()) is not None
    # ...and not after it: one epoch read, the grant re-read, its tombstone found.
    ticker.now += 0.6
    kv.reads.clear()
    assert await check(elsewhere, repo, token, clock.now()) is None
    assert "mcp-oidc-revocation-epoch" in kv.reads
    for _ in range(3):
        ticker.now += 1.1
        assert await check(elsewhere, repo, token, clock.now()) is None


async def test_a_grant_read_that_straddles_a_revocation_is_not_remembered() -> None:
    kv = CountingStore(MemoryStore())
    repo, clock = new_repo(kv), FrozenClock()
    await a_grant(repo, clock.now(), expires_at=clock.now() + 86400)
    cache = bearer.BearerCache(repo, propagation_seconds=60.0, monotonic=Ticker())
    token = a_token(clock.now())

    async def revoke() -> None:
        await repo.revoke_grant("g1", 3600, clock.now())

    # The grant and its (absent) tombstone are read, then the revocation lands before the
    # cache keeps them: this request may pass (it read a live grant), the next must not.
    kv.after_grant_read = revoke
    await check(cache, repo, token, clock.now())
    assert await check(cache, repo, token, clock.now()) is None


async def test_the_cache_never_outlives_the_grants_absolute_end() -> None:
    repo, clock = new_repo(MemoryStore()), FrozenClock()
    await a_grant(repo, clock.now(), expires_at=clock.now() + 100)
    cache = bearer.BearerCache(repo, propagation_seconds=1.0, monotonic=Ticker())
    token = a_token(clock.now())
    assert await check(cache, repo, token, clock.now()) is not None
    clock.advance(99)
    assert await check(cache, repo, token, clock.now()) is not None
    clock.advance(2)
    assert await check(cache, repo, token, clock.now()) is None


async def test_the_cache_never_outlives_grant_max_lifetime_for_a_grant_without_an_end() -> None:
    repo, clock = new_repo(MemoryStore()), FrozenClock()
    await a_grant(repo, clock.now(), expires_at=None)
    cache = bearer.BearerCache(repo, propagation_seconds=1.0, grant_lifetime=50, monotonic=Ticker())
    token = a_token(clock.now())
    assert await check(cache, repo, token, clock.now()) is not None
    clock.advance(51)
    assert await check(cache, repo, token, clock.now()) is None


async def test_the_cache_never_outlives_the_tokens_exp() -> None:
    repo, clock = new_repo(MemoryStore()), FrozenClock()
    await a_grant(repo, clock.now(), expires_at=clock.now() + 86400)
    cache = bearer.BearerCache(repo, propagation_seconds=1.0, monotonic=Ticker())
    token = a_token(clock.now(), lifetime=30)
    assert await check(cache, repo, token, clock.now()) is not None
    clock.advance(31)
    assert await check(cache, repo, token, clock.now()) is None


async def test_with_propagation_zero_the_grant_is_read_on_every_request() -> None:
    kv = CountingStore(MemoryStore())
    repo, clock = new_repo(kv), FrozenClock()
    await a_grant(repo, clock.now(), expires_at=clock.now() + 86400)
    cache = bearer.BearerCache(repo, propagation_seconds=0, monotonic=Ticker())
    token = a_token(clock.now())
    assert await check(cache, repo, token, clock.now()) is not None
    kv.reads.clear()
    assert await check(cache, repo, token, clock.now()) is not None
    assert kv.reads.count("mcp-oidc-grants") == 1 and kv.reads.count("mcp-oidc-revoked-grants") == 1
    # A grant gone from the store behind our back is refused on the very next request.
    await kv.key_value.delete("g1", collection="mcp-oidc-grants")
    assert await check(cache, repo, token, clock.now()) is None


async def test_an_unreadable_epoch_refuses_even_a_cached_token_as_an_outage() -> None:
    kv = CountingStore(MemoryStore())
    repo, clock, ticker = new_repo(kv), FrozenClock(), Ticker()
    await a_grant(repo, clock.now(), expires_at=clock.now() + 86400)
    cache = bearer.BearerCache(repo, propagation_seconds=1.0, monotonic=ticker)
    token = a_token(clock.now())
    assert await check(cache, repo, token, clock.now()) is not None
    kv.fail_reads = True
    ticker.now += 1.5
    with pytest.raises(ConnectionError):  # the verifiers turn this into a refusal and a 503
        await check(cache, repo, token, clock.now())
    kv.fail_reads = False
    assert await check(cache, repo, token, clock.now()) is not None


async def test_concurrent_requests_after_the_interval_share_one_epoch_read() -> None:
    kv = CountingStore(MemoryStore())
    repo, clock, ticker = new_repo(kv), FrozenClock(), Ticker()
    await a_grant(repo, clock.now(), expires_at=clock.now() + 86400)
    cache = bearer.BearerCache(repo, propagation_seconds=1.0, monotonic=ticker)
    token = a_token(clock.now())
    assert await check(cache, repo, token, clock.now()) is not None
    ticker.now += 2
    kv.reads.clear()
    results: list[Any] = []

    async def one() -> None:
        results.append(await check(cache, repo, token, clock.now()))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    assert all(r is not None for r in results) and len(results) == 20
    assert kv.reads.count("mcp-oidc-revocation-epoch") == 1


async def test_the_cache_is_bounded() -> None:
    repo, clock = new_repo(MemoryStore()), FrozenClock()
    cache = bearer.BearerCache(repo, propagation_seconds=1.0, size=5, monotonic=Ticker())
    for i in range(12):
        await a_grant(repo, clock.now(), expires_at=clock.now() + 86400, grant_id=f"g{i}")
        assert await check(cache, repo, a_token(clock.now(), grant_id=f"g{i}"), clock.now()) is not None
    assert len(cache._tokens) <= 5 and len(cache._grants) <= 5
