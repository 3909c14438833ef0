"""Caching resolved client metadata documents, and the operator's domain policy.

Draft §5.2: the server SHOULD respect HTTP cache headers (RFC 9111) within its own bounds and
MUST NOT cache error responses or invalid documents. Here the freshness lifetime is
``max-age`` (or ``s-maxage``) clamped to [``MIN_TTL``, ``MAX_TTL``]; ``no-store``, ``no-cache`` or no
usable directive give ``MIN_TTL`` (a document must be held at least for one login). After it
runs out the document is refetched; if that refetch fails *transiently* (network, 5xx), the
stored copy is served for at most ``stale_if_error`` more seconds (RFC 5861 §4), never for a
refusal such as a changed ``client_id`` or a private address.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from ..core.redirect_policy import DEFAULT_PRIVATE_USE_SCHEMES
from .document import ensure_client_id_url, validate_client_document
from .errors import CimdDomainRefused, CimdError, CimdFetchFailed
from .fetch import CimdFetcher, FetchedDocument

MIN_TTL = 5 * 60
MAX_TTL = 24 * 60 * 60
STALE_IF_ERROR = 60 * 60
RECORD_VERSION = 1

Load = Callable[[str], Awaitable[dict[str, Any] | None]]
Save = Callable[[str, dict[str, Any], float], Awaitable[None]]
Clock = Callable[[], float]
Decision = Literal["denied", "allowed", "trusted"]


def cache_ttl(cache_control: str | None, *, min_ttl: float = MIN_TTL, max_ttl: float = MAX_TTL) -> float:
    """Freshness lifetime in seconds from a ``Cache-Control`` header, clamped to ``[min_ttl, max_ttl]``."""
    directives: dict[str, str | None] = {}
    for part in (cache_control or "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives.setdefault(name.strip().lower(), value.strip().strip('"') if value else None)
    if "no-store" in directives or "no-cache" in directives:
        return min_ttl
    for name in ("s-maxage", "max-age"):
        raw = directives.get(name)
        if raw is not None and raw.isdigit():
            return float(min(max(int(raw), min_ttl), max_ttl))
    return min_ttl


def cache_key(url: str) -> str:
    """Store key for a client_id URL: its SHA-256, so no URL text reaches the store's key space."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def _normalise_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


def _check_pattern(pattern: str) -> str:
    p = _normalise_host(pattern)
    body = p[2:] if p.startswith("*.") else p
    if not body or "*" in body or "/" in body or ":" in body or ("." not in body and p.startswith("*.")):
        raise ValueError(f"invalid domain pattern {pattern!r}: use host.example or *.example.com")
    return p


def host_matches(host: str, pattern: str) -> bool:
    """``example.com`` matches only itself; ``*.example.com`` matches any name below it, not itself."""
    host, pattern = _normalise_host(host), _normalise_host(pattern)
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


@dataclass(frozen=True)
class DomainPolicy:
    """Operator policy on client_id hosts (draft §8.9). Deny wins; trusted hosts count as allowed.

    An empty ``allow`` allows every host that is not denied. ``trusted`` hosts may skip consent.
    """

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    trusted: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("allow", "deny", "trusted"):
            object.__setattr__(self, name, tuple(_check_pattern(p) for p in getattr(self, name)))

    def decide(self, host: str) -> Decision:
        if any(host_matches(host, p) for p in self.deny):
            return "denied"
        if any(host_matches(host, p) for p in self.trusted):
            return "trusted"
        if not self.allow or any(host_matches(host, p) for p in self.allow):
            return "allowed"
        return "denied"


@dataclass(frozen=True)
class ResolvedClient:
    """Validated metadata for a CIMD client, ready for :func:`.document.client_information`."""

    client_id: str
    host: str
    metadata: dict[str, Any]
    trusted: bool
    fresh_until: float
    stale: bool = False


@dataclass
class _Flight:
    done: anyio.Event = field(default_factory=anyio.Event)
    result: ResolvedClient | None = None
    error: CimdError | None = None


class CimdResolver:
    """client_id URL -> :class:`ResolvedClient`: policy, cache, one coalesced fetch, validation.

    ``load(key)`` / ``save(key, record, ttl)`` persist JSON-able records under :func:`cache_key`; the
    store TTL passed to ``save`` covers the freshness lifetime plus the stale-if-error window.
    """

    def __init__(
        self,
        *,
        load: Load,
        save: Save,
        fetcher: CimdFetcher | None = None,
        policy: DomainPolicy | None = None,
        private_use_schemes: Iterable[str] = DEFAULT_PRIVATE_USE_SCHEMES,
        allowed_redirect_hosts: Iterable[str] = (),
        clock: Clock = time.time,
        min_ttl: float = MIN_TTL,
        max_ttl: float = MAX_TTL,
        stale_if_error: float = STALE_IF_ERROR,
    ) -> None:
        if not 0 < min_ttl <= max_ttl or stale_if_error < 0:
            raise ValueError("need 0 < min_ttl <= max_ttl and stale_if_error >= 0")
        self._load, self._save, self._clock = load, save, clock
        self.fetcher = fetcher or CimdFetcher()
        self.policy = policy or DomainPolicy()
        self._schemes = tuple(private_use_schemes)
        self._redirect_hosts = tuple(allowed_redirect_hosts)
        self.min_ttl, self.max_ttl, self.stale_if_error = min_ttl, max_ttl, stale_if_error
        self._flights: dict[str, _Flight] = {}

    async def resolve(self, client_id: str) -> ResolvedClient:
        """The client's validated metadata; raises a :class:`.errors.CimdError` subclass."""
        host = ensure_client_id_url(client_id)
        decision = self.policy.decide(host)
        if decision == "denied":
            raise CimdDomainRefused()
        key = cache_key(client_id)
        stored = self._from_record(client_id, host, decision, await self._load(key))
        if stored is not None and self._clock() < stored.fresh_until:
            return stored
        flight = self._flights.get(key)
        if flight is not None:
            await flight.done.wait()
            if flight.result is None:
                # A fresh exception per waiter: one instance raised in many tasks tangles tracebacks.
                error = flight.error if isinstance(flight.error, CimdError) else CimdFetchFailed()
                raise type(error)(error.description)
            return flight.result
        flight = self._flights[key] = _Flight()
        try:
            flight.result = await self._refresh(client_id, host, decision, key, stored)
            return flight.result
        except BaseException as exc:
            flight.error = exc if isinstance(exc, CimdError) else CimdFetchFailed()
            raise
        finally:
            del self._flights[key]
            flight.done.set()

    async def _refresh(
        self, client_id: str, host: str, decision: Decision, key: str, stored: ResolvedClient | None
    ) -> ResolvedClient:
        try:
            fetched: FetchedDocument = await self.fetcher.fetch(client_id)
            metadata = validate_client_document(
                client_id,
                fetched.document,
                private_use_schemes=self._schemes,
                allowed_redirect_hosts=self._redirect_hosts,
            )
        except CimdError as exc:
            now = self._clock()
            if exc.transient and stored is not None and now < stored.fresh_until + self.stale_if_error:
                return ResolvedClient(client_id, host, stored.metadata, stored.trusted, stored.fresh_until, stale=True)
            raise
        now = self._clock()
        ttl = cache_ttl(fetched.cache_control, min_ttl=self.min_ttl, max_ttl=self.max_ttl)
        record = {"v": RECORD_VERSION, "metadata": metadata, "fetched_at": now, "fresh_until": now + ttl}
        await self._save(key, record, ttl + self.stale_if_error)
        return ResolvedClient(client_id, host, metadata, decision == "trusted", now + ttl)

    @staticmethod
    def _from_record(
        client_id: str, host: str, decision: Decision, record: dict[str, Any] | None
    ) -> ResolvedClient | None:
        # A record of another version or shape is treated as missing, never trusted half-read.
        if not record or record.get("v") != RECORD_VERSION:
            return None
        metadata, fresh_until = record.get("metadata"), record.get("fresh_until")
        if not isinstance(metadata, dict) or metadata.get("client_id") != client_id:
            return None
        if not isinstance(fresh_until, (int, float)) or not math.isfinite(fresh_until):
            return None
        return ResolvedClient(client_id, host, metadata, decision == "trusted", float(fresh_until))
