"""A refresh interrupted by a store failure never leaves the client holding nothing.

The store fails at the worst moment a refresh has: writing the new refresh token. The old one
must still work afterwards (the new tokens are stored before the old token is consumed).
"""

from __future__ import annotations

from typing import Any

from key_value.aio.stores.memory import MemoryStore
from support.harness import integrated_server


class StoreFailingOnce(MemoryStore):
    """A real in-memory store whose next write to one collection fails as an outage would."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next_put_to: str | None = None

    async def put(self, key: str, value: Any, *, collection: str | None = None, ttl: Any = None) -> None:
        if collection is not None and collection == self.fail_next_put_to:
            self.fail_next_put_to = None
            raise ConnectionError("store unreachable")
        await super().put(key, value, collection=collection, ttl=ttl)


async def test_a_refresh_cut_by_a_store_failure_leaves_the_old_refresh_token_usable(dev_idp: str) -> None:
    store = StoreFailingOnce()
    async with integrated_server(dev_idp, store=store) as server:
        client, tokens = await server.login_and_redeem()
        store.fail_next_put_to = "mcp-oidc-refresh-tokens"
        failed = await server.token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        assert failed.status_code != 200
        assert store.fail_next_put_to is None  # the failure did happen

        retried = await server.token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        assert retried.status_code == 200, retried.text
        assert (await server.mcp(retried.json()["access_token"])).status_code == 200
        # And rotation still holds: the old token is spent now.
        replayed = await server.token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        assert replayed.status_code == 400
