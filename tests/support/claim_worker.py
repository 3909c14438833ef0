"""One process of the cross-process claim race, driven by lines on stdin (one start-up, many races).

``prepare URL COLLECTION VALUES CLAIMERS`` opens the store and prints ``ready``; ``go`` then runs,
for each value 0..VALUES-1, CLAIMERS concurrent ``Collection.claim`` calls and prints one JSON
line ``{"wins": [...per value...], "seen": N}``, where ``seen`` counts claimers that read the
record (a naive "get, then proceed" would have redeemed each of them).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from key_value.aio.protocols import AsyncKeyValue

from mcp_oidc_provider.store.backends import store_from_url
from mcp_oidc_provider.store.records import Record
from mcp_oidc_provider.store.repository import Collection


class Value(Record):
    n: int


class CountingReads:
    """Forwards to the store, counting reads that found a record."""

    def __init__(self, kv: AsyncKeyValue) -> None:
        self.kv = kv
        self.seen = 0

    async def get(self, key: str, *, collection: str | None = None) -> dict[str, Any] | None:
        found = await self.kv.get(key, collection=collection)
        if found is not None:
            self.seen += 1
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


async def race(kv: AsyncKeyValue, collection: str, values: int, claimers: int) -> tuple[list[int], int]:
    counting = CountingReads(kv)
    col = Collection(counting, collection, Value)  # type: ignore[arg-type]
    wins: list[int] = []
    for i in range(values):
        got = await asyncio.gather(*(col.claim(f"v{i}") for _ in range(claimers)))
        wins.append(sum(1 for g in got if g is not None))
    return wins, counting.seen


async def main() -> None:
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        _, url, collection, values, claimers = line.split()
        store = store_from_url(url)
        await store.get("warm-up", collection=f"mcp-oidc-{collection}")  # connect before the start line
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        wins, seen = await race(store, collection, int(values), int(claimers))
        print(json.dumps({"wins": wins, "seen": seen}), flush=True)
        await store.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    asyncio.run(main())
