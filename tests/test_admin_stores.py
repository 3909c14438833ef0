"""Admin listings need each store to enumerate one collection's keys (issue 10 item 5)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from test_store_backends import postgres_url  # noqa: F401  (fixture: a database of our own)

from mcp_oidc_provider.admin import Admin
from mcp_oidc_provider.store.backends import store_from_url
from mcp_oidc_provider.store.records import GrantRecord, StoredGrant
from mcp_oidc_provider.store.repository import Repository


async def _lists_grants_of_one_user_only(url: str) -> None:
    store = store_from_url(url)
    async with contextlib.AsyncExitStack() as stack:
        if hasattr(store, "__aenter__"):
            await stack.enter_async_context(store)  # closes the PostgreSQL pool
        await _check(store)


async def _check(store: Any) -> None:
    repo = Repository(store)
    for grant_id, subject in (("g1", "alice"), ("g2", "alice"), ("g3", "bob")):
        grant = GrantRecord(
            grant_id=grant_id,
            client_id="c",
            subject=subject,
            scopes=["mcp"],
            resource="r",
            created_at=1.0,
            expires_at=2.0,
        )
        stored = StoredGrant(**grant.model_dump(exclude={"claims", "upstream"}), sealed="x")
        await store.put(grant_id, stored.model_dump(mode="json"), collection="mcp-oidc-grants", ttl=60)
        await repo.index_grant(grant, 60)
    await repo.index_grant(
        GrantRecord(grant_id="gone", client_id="c", subject="alice", scopes=[], resource="r", created_at=1.0), 60
    )  # its grant record expired: a stale entry
    admin = Admin(store)
    assert sorted(g.grant_id for g in await admin.grants(user="alice")) == ["g1", "g2"]
    assert sorted(g.grant_id for g in await admin.grants(client="c")) == ["g1", "g2", "g3"]
    assert sorted(await repo.grant_ids_of_subject("alice")) == ["g1", "g2"]  # the stale entry was dropped
    await admin.revoke(user="alice")
    assert [g.grant_id for g in await admin.grants(client="c")] == ["g3"]


async def test_the_disk_store_lists_the_grants_of_one_user(tmp_path: Path) -> None:
    await _lists_grants_of_one_user_only(f"disk://{tmp_path}/store")


async def test_the_postgresql_store_lists_the_grants_of_one_user(postgres_url: str) -> None:  # noqa: F811
    await _lists_grants_of_one_user_only(postgres_url + "?table=admin_listing")


@pytest.mark.parametrize("url", ["memory://"])
async def test_the_memory_store_lists_the_grants_of_one_user(url: str) -> None:
    await _lists_grants_of_one_user_only(url)
