"""A py-key-value-aio wrapper that times every store call and counts its failures (Prometheus).

Used by the provider when metrics are on (``metrics_port``). Labels are the operation and the
collection, both from small fixed sets: never a key, since keys may be digests of secrets.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, SupportsFloat, TypeVar

from key_value.aio.protocols import AsyncKeyValue
from key_value.aio.wrappers.base import BaseWrapper
from prometheus_client import Counter, Histogram

STORE_SECONDS = Histogram(
    "mcp_oidc_store_operation_seconds",
    "Latency of store operations",
    ["operation", "collection"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
STORE_ERRORS = Counter(
    "mcp_oidc_store_errors_total",
    "Store operations that raised (outage, timeout, corrupt value)",
    ["operation", "collection"],
)

T = TypeVar("T")


class InstrumentedStore(BaseWrapper):
    """Every call passes through unchanged; its duration and any exception are recorded."""

    def __init__(self, key_value: AsyncKeyValue) -> None:
        self.key_value = key_value

    async def _timed(self, operation: str, collection: str | None, call: Callable[[], Awaitable[T]]) -> T:
        labels = (operation, collection or "default")
        started = time.perf_counter()
        try:
            return await call()
        except Exception:
            STORE_ERRORS.labels(*labels).inc()
            raise
        finally:
            STORE_SECONDS.labels(*labels).observe(time.perf_counter() - started)

    async def get(self, key: str, *, collection: str | None = None) -> dict[str, Any] | None:
        return await self._timed("get", collection, lambda: self.key_value.get(key, collection=collection))

    async def get_many(self, keys: Sequence[str], *, collection: str | None = None) -> list[dict[str, Any] | None]:
        return await self._timed("get_many", collection, lambda: self.key_value.get_many(keys, collection=collection))

    async def ttl(self, key: str, *, collection: str | None = None) -> tuple[dict[str, Any] | None, float | None]:
        return await self._timed("ttl", collection, lambda: self.key_value.ttl(key, collection=collection))

    async def ttl_many(
        self, keys: Sequence[str], *, collection: str | None = None
    ) -> list[tuple[dict[str, Any] | None, float | None]]:
        return await self._timed("ttl_many", collection, lambda: self.key_value.ttl_many(keys, collection=collection))

    async def put(
        self, key: str, value: Mapping[str, Any], *, collection: str | None = None, ttl: SupportsFloat | None = None
    ) -> None:
        await self._timed("put", collection, lambda: self.key_value.put(key, value, collection=collection, ttl=ttl))

    async def put_many(
        self,
        keys: Sequence[str],
        values: Sequence[Mapping[str, Any]],
        *,
        collection: str | None = None,
        ttl: SupportsFloat | None = None,
    ) -> None:
        await self._timed(
            "put_many", collection, lambda: self.key_value.put_many(keys, values, collection=collection, ttl=ttl)
        )

    async def delete(self, key: str, *, collection: str | None = None) -> bool:
        return await self._timed("delete", collection, lambda: self.key_value.delete(key, collection=collection))

    async def delete_many(self, keys: Sequence[str], *, collection: str | None = None) -> int:
        return await self._timed(
            "delete_many", collection, lambda: self.key_value.delete_many(keys, collection=collection)
        )
