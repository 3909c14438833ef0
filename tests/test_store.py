"""Stores: ``store_from_url``, and what a Redis dump reveals after real logins (TTLs, no secrets)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest
import redis.asyncio as aioredis
from key_value.aio.protocols import AsyncKeyValue
from key_value.aio.wrappers.prefix_collections import PrefixCollectionsWrapper
from support.harness import Harness, integrated_server, pkce

from mcp_oidc_provider import ConfigurationError, store_from_url

REDIS_URL = "redis://127.0.0.1:6379/7"
PASSWORD = "s3cr3t-Pa55w0rd"
DAY = 86400


@pytest.fixture(autouse=True)
def no_jwks_from_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JWKS", raising=False)


# store_from_url


async def assert_round_trip(store: AsyncKeyValue, collection: str) -> None:
    await store.put("k", {"hello": "world"}, collection=collection, ttl=60)
    assert await store.get("k", collection=collection) == {"hello": "world"}
    value, remaining = await store.ttl("k", collection=collection)
    assert value == {"hello": "world"}
    assert remaining is not None and 0 < remaining <= 60
    assert await store.delete("k", collection=collection) is True
    assert await store.get("k", collection=collection) is None


async def test_a_memory_url_gives_a_working_store() -> None:
    await assert_round_trip(store_from_url("memory://"), "test-store")


async def test_a_disk_url_gives_a_store_that_other_processes_on_the_directory_share(tmp_path: Path) -> None:
    url = f"disk://{tmp_path}/kv"
    store, other = store_from_url(url), store_from_url(url)
    try:
        await assert_round_trip(store, "test-store")
        await store.put("shared", {"n": 1}, collection="test-store", ttl=60)
        assert await other.get("shared", collection="test-store") == {"n": 1}
        assert (tmp_path / "kv").is_dir()
    finally:
        await store.close()  # type: ignore[attr-defined]
        await other.close()  # type: ignore[attr-defined]


async def test_a_disk_url_with_a_single_slash_names_the_same_absolute_directory(tmp_path: Path) -> None:
    store = store_from_url(f"disk:{tmp_path}/single")
    try:
        await assert_round_trip(store, "test-store")
        assert (tmp_path / "single").is_dir()
    finally:
        await store.close()  # type: ignore[attr-defined]


@pytest.fixture
async def redis_raw() -> AsyncIterator[aioredis.Redis]:
    raw = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await raw.ping()
    except (aioredis.ConnectionError, OSError):
        await raw.aclose()
        pytest.fail("the tests need Redis on 127.0.0.1:6379")
    yield raw
    await raw.aclose()


async def test_a_redis_url_gives_a_working_store(redis_raw: aioredis.Redis) -> None:
    collection = f"test-store-{uuid.uuid4().hex}"
    store = store_from_url(REDIS_URL)
    try:
        await assert_round_trip(store, collection)
        await store.put("visible", {"n": 1}, collection=collection, ttl=60)
        # It really is Redis db 7 the URL names, not some local fallback.
        assert 0 < await redis_raw.ttl(f"{collection}::visible") <= 60
    finally:
        await redis_raw.delete(f"{collection}::visible", f"{collection}::k")
        await store.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    [
        f"foo://user:{PASSWORD}@host:6379/0",
        f"mysql://admin:{PASSWORD}@db.internal/app",
        f"user:{PASSWORD}@host",
        f"//user:{PASSWORD}@host/0",
        "",
    ],
)
def test_an_unknown_store_url_scheme_is_refused_without_echoing_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        store_from_url(url)
    message = str(raised.value)
    assert "memory://" in message and "redis://" in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(raised.value.args)


def test_a_disk_url_without_a_directory_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="directory"):
        store_from_url("disk://")


# Redis after real logins


@pytest.fixture
async def redis_harness_store(redis_raw: aioredis.Redis) -> AsyncIterator[tuple[AsyncKeyValue, str]]:
    """``store_from_url`` on Redis db 7, its collections under a unique prefix; deleted afterwards."""
    prefix = f"test-store-{uuid.uuid4().hex}"
    base = store_from_url(REDIS_URL)
    try:
        yield PrefixCollectionsWrapper(base, prefix), prefix
    finally:
        async for key in redis_raw.scan_iter(match=f"{prefix}__*"):
            await redis_raw.delete(key)
        await base.close()  # type: ignore[attr-defined]


async def dump(raw: aioredis.Redis, prefix: str) -> dict[str, tuple[str, int]]:
    """Every key our provider wrote: ``{key: (value, ttl)}``."""
    found = {}
    async for key in raw.scan_iter(match=f"{prefix}__*"):
        found[key] = (await raw.get(key), await raw.ttl(key))
    return found


def collection_of(key: str, prefix: str) -> str:
    collection, _, _ = key.removeprefix(f"{prefix}__").partition("::")
    return collection


async def every_kind_of_record(harness: Harness) -> dict[str, Any]:
    """One of each: a redeemed-and-refreshed login, a code never redeemed, a login left at the IdP."""
    client = await harness.register()
    assert client.client_secret
    verifier, challenge = pkce()
    query = await harness.browser_login(harness.authorize_url(client, challenge), client.redirect_uri)
    redeemed_code = query["code"]
    first = await harness.redeem(client, redeemed_code, verifier)
    assert first.status_code == 200, first.text
    refreshed = await harness.token(client, grant_type="refresh_token", refresh_token=first.json()["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text

    _, challenge = pkce()
    pending = await harness.browser_login(harness.authorize_url(client, challenge), client.redirect_uri)

    _, challenge = pkce()
    async with httpx2.AsyncClient() as browser:
        to_idp = await harness.to_upstream(browser, client, challenge, state="abandoned")
    upstream_state = dict(parse_qsl(urlsplit(to_idp).query))["state"]

    return {
        "client_secret": client.client_secret,
        "redeemed_code": redeemed_code,
        "pending_code": pending["code"],
        "first_access_token": first.json()["access_token"],
        "first_refresh_token": first.json()["refresh_token"],
        "access_token": refreshed.json()["access_token"],
        "refresh_token": refreshed.json()["refresh_token"],
        "upstream_state": upstream_state,
    }


async def test_after_login_and_refresh_every_redis_key_expires_within_its_lifetime(
    dev_idp: str, redis_raw: aioredis.Redis, redis_harness_store: tuple[AsyncKeyValue, str]
) -> None:
    store, prefix = redis_harness_store
    async with integrated_server(dev_idp, store=store) as harness:
        await every_kind_of_record(harness)
        settings = harness.provider.settings
    records = await dump(redis_raw, prefix)

    limits = {
        "mcp-oidc-keys": 400 * DAY,
        "mcp-oidc-public-keys": 400 * DAY,
        "mcp-oidc-clients": settings.client_ttl,
        "mcp-oidc-logins": settings.login_transaction_ttl,
        "mcp-oidc-grants": settings.refresh_token_ttl,
        "mcp-oidc-codes": settings.authorization_code_ttl,
        "mcp-oidc-spent-codes": settings.refresh_token_ttl,
        "mcp-oidc-refresh-tokens": settings.refresh_token_ttl,
        "mcp-oidc-spent-refresh-tokens": settings.refresh_token_ttl,
    }
    collections = {collection_of(key, prefix) for key in records}
    # Every kind of record the flow makes was written, so the TTL checks below cover them all.
    assert set(limits) - {"mcp-oidc-public-keys"} <= collections
    assert all(collection.startswith("mcp-oidc-") for collection in collections), collections
    without_ttl = sorted(key for key, (_, ttl) in records.items() if ttl <= 0)
    assert without_ttl == []
    too_long = sorted(
        key for key, (_, ttl) in records.items() if ttl > limits.get(collection_of(key, prefix), float("inf"))
    )
    assert too_long == []


async def test_a_redis_dump_after_login_and_refresh_holds_no_token_code_state_or_client_secret(
    dev_idp: str, redis_raw: aioredis.Redis, redis_harness_store: tuple[AsyncKeyValue, str]
) -> None:
    store, prefix = redis_harness_store
    async with integrated_server(dev_idp, store=store) as harness:
        secrets = await every_kind_of_record(harness)
    records = await dump(redis_raw, prefix)
    assert records

    everything = "\n".join(f"{key}\n{value}" for key, (value, _) in records.items())
    leaked = sorted(name for name, secret in secrets.items() if secret in everything)
    assert leaked == []

    # Codes and refresh tokens are found by their SHA-256, which is useless to whoever reads it.
    def sha256(value: str) -> str:
        return hashlib.sha256(value.encode()).hexdigest()

    assert f"{prefix}__mcp-oidc-codes::{sha256(secrets['pending_code'])}" in records
    assert f"{prefix}__mcp-oidc-refresh-tokens::{sha256(secrets['refresh_token'])}" in records
    assert f"{prefix}__mcp-oidc-spent-refresh-tokens::{sha256(secrets['first_refresh_token'])}" in records
    assert f"{prefix}__mcp-oidc-spent-codes::{sha256(secrets['redeemed_code'])}" in records


async def test_a_registered_client_expires_after_the_configured_client_ttl(
    dev_idp: str, redis_raw: aioredis.Redis, redis_harness_store: tuple[AsyncKeyValue, str]
) -> None:
    store, prefix = redis_harness_store
    async with integrated_server(dev_idp, store=store, client_ttl=3600) as harness:
        client = await harness.register()
        assert await harness.provider.get_client(client.client_id) is not None
        ttl = await redis_raw.ttl(f"{prefix}__mcp-oidc-clients::{client.client_id}")
    assert 0 < ttl <= 3600
