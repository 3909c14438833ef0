"""The upstream-token vault: a grant's tokens at the IdP, for tools (issue 11 item 3).

Inside a tool, the SDK's ``get_access_token()`` returns our :class:`FederatedAccessToken`:
``subject`` is the upstream user's ``sub`` and ``claims`` holds their ID token claims (as
mapped by the configured claims mapper) merged with our access token's claims.
:func:`get_upstream_tokens` returns that user's tokens at the upstream IdP, refreshed first
when they are about to expire and a refresh token is available. It raises
:class:`UpstreamSessionEnded` when the IdP ended the user's session (the grant is then revoked)
and :class:`UpstreamTemporarilyUnavailable` when fresh tokens are needed and the IdP does not
answer after retries.

Exactly one refresh per expiry, across every process sharing the store
======================================================================

py-key-value has no compare-and-set; its one atomic primitive is that ``delete()`` returns True
only to the caller that removed the key. So the lock of each *generation* of upstream tokens is
a set of lock tokens created once, together with that generation, by its single writer
(:meth:`.Repository.save_upstream`). To refresh generation ``g`` a caller must delete lock token
``(g, 0)``: one caller wins, the others wait (polling the store with backoff, bounded) and
accept generation ``g + 1`` as soon as it appears, whatever its expiry (a waiter never
refreshes again what another refreshed during its wait). The winner writes a lease with a
deadline, refreshes (retrying a transient failure with backoff inside the deadline), and writes
generation ``g + 1`` with the rotated refresh token (which creates its lock tokens). If it fails
transiently it puts its lock token back before its deadline; if it vanishes (a crash), a waiter
takes lock token ``(g, 1)`` once the lease deadline has passed (or, if the lease never appeared,
once it has watched the lock taken and the lease absent for a whole lock period), and so on for
``(g, 2)``. The usual limit of TTL locks applies: a holder stalled past its deadline may overlap
with its successor; the deadline covers every retry at the configured upstream timeout.

A write never lands on a revoked grant: :meth:`.Repository.save_upstream` checks the tombstone
after writing and undoes the write (see :meth:`.Repository._write_unless_revoked`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token

from ..core import audit
from ..core.clock import Clock
from ..core.errors import (
    OIDCProviderError,
    UpstreamGrantInvalid,
    UpstreamSessionEnded,
    UpstreamTemporarilyUnavailable,
    UpstreamUnavailable,
)
from ..core.models import FederatedAccessToken, UpstreamTokens, UpstreamTokenSource
from ..store.records import GrantRecord, StoredUpstream
from ..store.repository import UPSTREAM_LOCK_ATTEMPTS, Repository
from .client import tokens_from_response
from .protocol import UpstreamProvider

logger = logging.getLogger("mcp_oidc_provider.upstream")

#: Refresh upstream tokens this many seconds before they expire.
UPSTREAM_REFRESH_MARGIN = 30
#: Transient upstream failures are retried this many times, with exponential backoff.
UPSTREAM_RETRIES = 2
UPSTREAM_RETRY_BACKOFF = 0.25
#: A revocation tombstone written here covers the grant's remaining life plus one day (the
#: longest access token); when the grant's end is unknown, this.
DEFAULT_TOMBSTONE_TTL = 32 * 86400

#: One in-process lock per (store, grant): concurrent requests of one process queue here
#: instead of polling the store.
_process_locks: dict[tuple[int, str], anyio.Lock] = {}


async def get_upstream_tokens() -> UpstreamTokens | None:
    """The current user's upstream IdP tokens, or None outside an authenticated request.

    Raises :class:`UpstreamSessionEnded` (the user must sign in again) or
    :class:`UpstreamTemporarilyUnavailable` (try again later)."""
    token = get_access_token()
    if not isinstance(token, FederatedAccessToken) or token._source is None:
        return None
    source: UpstreamTokenSource = token._source
    return await source.upstream_tokens_for(token)


def _needs_refresh(tokens: UpstreamTokens, now: float, margin: float) -> bool:
    return tokens.refresh_token is not None and tokens.expires_at is not None and tokens.expires_at < now + margin


@dataclass(frozen=True)
class RefreshOutcome:
    #: refreshed: generation g+1 exists (ours or another's); ended: the IdP said invalid_grant and
    #: the grant is revoked; unavailable: no answer within the retries/wait; revoked: the grant is
    #: gone; none: nothing to refresh with.
    kind: Literal["refreshed", "ended", "unavailable", "revoked", "none"]
    tokens: UpstreamTokens | None = None


class UpstreamTokenService:
    """Reads a grant's upstream tokens; refreshes them first when they are about to expire.

    Without an upstream client (an MCP server in proxy mode that holds no IdP credentials) the
    stored tokens are returned as they are.
    """

    def __init__(
        self,
        repo: Repository,
        upstream: UpstreamProvider | None,
        clock: Clock,
        *,
        refresh_margin: float = UPSTREAM_REFRESH_MARGIN,
        retries: int = UPSTREAM_RETRIES,
        backoff: float = UPSTREAM_RETRY_BACKOFF,
        tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL,
        lock_seconds: float | None = None,
    ) -> None:
        self._repo = repo
        self._upstream = upstream
        self._clock = clock
        self._margin = refresh_margin
        self._retries = retries
        self._backoff = backoff
        self._tombstone_ttl = tombstone_ttl
        # An UpstreamProvider need not have settings (a custom one); OIDC and GitHub clients do.
        timeout = float(getattr(getattr(upstream, "settings", None), "timeout_seconds", 10.0))
        #: A lock holder's deadline: every attempt at the upstream timeout, with backoff, and slack.
        self.lock_seconds: float = lock_seconds or (retries + 1) * timeout + 2 * backoff * (2**retries) + 5

    async def tokens_for(self, access: FederatedAccessToken) -> UpstreamTokens | None:
        found = await self._repo.load_grant_and_upstream(access.grant_id)
        if found is None or found[0].upstream is None:
            return None
        grant, stored, _ = found
        current = grant.upstream
        assert current is not None
        if self._upstream is None or stored is None or not _needs_refresh(current, self._clock.now(), self._margin):
            return current
        outcome = await self.refresh(access.grant_id, stored.generation)
        if outcome.kind == "refreshed":
            return outcome.tokens
        if outcome.kind == "ended":
            raise UpstreamSessionEnded("The user's session at the identity provider has ended; sign in again")
        if outcome.kind == "revoked":
            return None
        if outcome.kind == "unavailable":
            if current.expires_at is not None and current.expires_at > self._clock.now():
                logger.warning("identity provider unreachable; grant %s keeps its unexpired tokens", access.grant_id)
                return current
            raise UpstreamTemporarilyUnavailable("The identity provider is unavailable; try again later")
        return current

    async def recheck(self, grant_id: str, max_age: float) -> RefreshOutcome:
        """Issue 8 §3: confirm the user's session at the IdP if the last confirmation is older
        than ``max_age``, by refreshing upstream. ``none`` when there is nothing to check with."""
        found = await self._repo.load_grant_and_upstream(grant_id)
        if found is None:
            return RefreshOutcome("revoked")
        grant, stored, _ = found
        if self._upstream is None or stored is None or grant.upstream is None or grant.upstream.refresh_token is None:
            return RefreshOutcome("none")
        if self._clock.now() - stored.checked_at < max_age:
            return RefreshOutcome("refreshed", grant.upstream)
        return await self.refresh(grant_id, stored.generation)

    async def refresh(self, grant_id: str, seen_generation: int) -> RefreshOutcome:
        """Make generation ``seen_generation + 1`` exist, once across all processes."""
        key = (id(self._repo.kv), grant_id)
        lock = _process_locks.setdefault(key, anyio.Lock())
        try:
            async with lock:
                return await self._refresh_once(grant_id, seen_generation)
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                _process_locks.pop(key, None)

    async def _refresh_once(self, grant_id: str, seen_generation: int) -> RefreshOutcome:
        give_up_at = self._clock.now() + self.lock_seconds * UPSTREAM_LOCK_ATTEMPTS + 5
        lease_missing_since: dict[int, float] = {}
        pause = 0.02
        while True:
            found = await self._repo.load_grant_and_upstream(grant_id)
            if found is None:
                return RefreshOutcome("revoked")
            grant, stored, remaining = found
            if stored is None or grant.upstream is None:
                return RefreshOutcome("none")
            if stored.generation != seen_generation:
                return RefreshOutcome("refreshed", grant.upstream)  # refreshed by another during our wait
            if grant.upstream.refresh_token is None:
                return RefreshOutcome("none")
            now = self._clock.now()
            for attempt in range(UPSTREAM_LOCK_ATTEMPTS):
                if await self._repo.claim_upstream_lock(grant_id, stored.generation, attempt):
                    return await self._refresh_holding(grant, stored, attempt, remaining)
                if not await self._holder_vanished(grant_id, stored.generation, attempt, now, lease_missing_since):
                    break
            else:
                logger.warning("upstream refresh of grant %s: every lock holder vanished", grant_id)
                return RefreshOutcome("unavailable")
            if now >= give_up_at:
                return RefreshOutcome("unavailable")
            await anyio.sleep(pause)
            pause = min(pause * 1.5, 0.5)

    async def _holder_vanished(
        self, grant_id: str, generation: int, attempt: int, now: float, missing_since: dict[int, float]
    ) -> bool:
        lease = await self._repo.upstream_lease(grant_id, generation, attempt)
        if lease is not None:
            return lease.deadline < now
        # Taken but no lease yet: the holder is between its claim and its lease write, or died
        # there. Only a whole lock period of absence counts as dead.
        first = missing_since.setdefault(attempt, now)
        return now - first >= self.lock_seconds

    async def _refresh_holding(
        self, grant: GrantRecord, stored: StoredUpstream, attempt: int, remaining: float | None
    ) -> RefreshOutcome:
        assert self._upstream is not None and grant.upstream is not None and grant.upstream.refresh_token
        deadline = self._clock.now() + self.lock_seconds
        await self._repo.put_upstream_lease(grant.grant_id, stored.generation, attempt, deadline)
        if attempt:  # taking over: the presumed-dead holder may have finished after all
            latest = await self._repo.load_upstream(grant.grant_id)
            if latest is not None and latest[1].generation != stored.generation:
                return RefreshOutcome("refreshed", latest[0])
        current = grant.upstream
        for retry in range(self._retries + 1):
            try:
                response = await self._upstream.refresh(current.refresh_token or "")
                fresh = tokens_from_response(response, self._clock.now())
            except UpstreamGrantInvalid:
                await self._end_session(grant)
                return RefreshOutcome("ended")
            except UpstreamUnavailable:
                pause = self._backoff * (2**retry)
                if retry < self._retries and self._clock.now() + pause + 1 < deadline:
                    await anyio.sleep(pause)
                    continue
                logger.warning("identity provider unreachable: upstream refresh of grant %s failed", grant.grant_id)
                await self._release(grant.grant_id, stored.generation, attempt, deadline)
                return RefreshOutcome("unavailable")
            except OIDCProviderError as exc:
                # Another refusal (invalid_client, a malformed response): the operator's problem,
                # not proof that the user's session ended; the grant is kept.
                logger.error("upstream refresh of grant %s refused: %s", grant.grant_id, type(exc).__name__)
                await self._release(grant.grant_id, stored.generation, attempt, deadline)
                return RefreshOutcome("unavailable")
            break
        # Keep the rotated refresh token; an IdP that does not rotate leaves the old one valid.
        fresh = fresh.model_copy(
            update={
                "refresh_token": fresh.refresh_token or current.refresh_token,
                "id_token": fresh.id_token or current.id_token,
            }
        )
        now = self._clock.now()
        ttl = remaining if remaining else ((grant.expires_at or now + 60) - now)
        if not await self._repo.save_upstream(grant.grant_id, fresh, stored.generation + 1, now, max(ttl, 1)):
            return RefreshOutcome("revoked")
        return RefreshOutcome("refreshed", fresh)

    async def _release(self, grant_id: str, generation: int, attempt: int, deadline: float) -> None:
        # Only the holder, only before its deadline: after it a successor may hold attempt+1,
        # and a lock token put back then would let a second caller in.
        if self._clock.now() < deadline:
            await self._repo.release_upstream_lock(grant_id, generation, attempt)

    async def _end_session(self, grant: GrantRecord) -> None:
        now = self._clock.now()
        ttl = self._tombstone_ttl
        if grant.expires_at is not None:
            ttl = max(ttl, grant.expires_at - now + 86400 + 3600)
        if await self._repo.revoke_grant(grant.grant_id, ttl, now):
            audit.emit(
                "upstream.session_ended",
                logging.WARNING,
                client_id=grant.client_id,
                grant_id=grant.grant_id,
                subject=grant.subject,
            )
