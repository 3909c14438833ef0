"""The upstream-token vault: a grant's tokens at the IdP, for tools.

Inside a tool, the SDK's ``get_access_token()`` returns our :class:`FederatedAccessToken`:
``subject`` is the upstream user's ``sub`` and ``claims`` holds their ID token claims (as
mapped by the configured claims mapper) merged with our access token's claims.
:func:`get_upstream_tokens` returns that user's tokens at the upstream IdP, refreshed first
when they are about to expire and a refresh token is available.
"""

from __future__ import annotations

import logging

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token

from ..core.clock import Clock
from ..core.errors import OIDCProviderError
from ..core.models import FederatedAccessToken, UpstreamTokens, UpstreamTokenSource
from ..store.repository import Repository
from .client import tokens_from_response
from .protocol import UpstreamProvider

logger = logging.getLogger("mcp_oidc_provider.upstream")

#: Refresh upstream tokens this many seconds before they expire.
UPSTREAM_REFRESH_MARGIN = 30


async def get_upstream_tokens() -> UpstreamTokens | None:
    """The current user's upstream IdP tokens, or None outside an authenticated request."""
    token = get_access_token()
    if not isinstance(token, FederatedAccessToken) or token._source is None:
        return None
    source: UpstreamTokenSource = token._source
    return await source.upstream_tokens_for(token)


def _needs_refresh(tokens: UpstreamTokens, now: float) -> bool:
    return (
        tokens.refresh_token is not None
        and tokens.expires_at is not None
        and tokens.expires_at < now + UPSTREAM_REFRESH_MARGIN
    )


class UpstreamTokenService:
    """Reads a grant's upstream tokens; refreshes them first when they are about to expire.

    Concurrent requests of one process for one grant make a single upstream refresh (the
    TypeScript original made one per request). Without an upstream client (an MCP server in
    proxy mode that holds no IdP credentials) the stored tokens are returned as they are.
    """

    def __init__(self, repo: Repository, upstream: UpstreamProvider | None, clock: Clock) -> None:
        self._repo = repo
        self._upstream = upstream
        self._clock = clock
        self._locks: dict[str, anyio.Lock] = {}

    async def tokens_for(self, access: FederatedAccessToken) -> UpstreamTokens | None:
        found = await self._repo.load_grant_with_ttl(access.grant_id)
        if found is None or found[0].upstream is None:
            return None
        current = found[0].upstream
        if self._upstream is None or not _needs_refresh(current, self._clock.now()):
            return current
        lock = self._locks.setdefault(access.grant_id, anyio.Lock())
        async with lock:
            try:
                return await self._refresh(access.grant_id)
            finally:
                if not lock.statistics().tasks_waiting:
                    self._locks.pop(access.grant_id, None)

    async def _refresh(self, grant_id: str) -> UpstreamTokens | None:
        assert self._upstream is not None
        found = await self._repo.load_grant_with_ttl(grant_id)
        if found is None or found[0].upstream is None:
            return None
        grant, remaining = found
        current = grant.upstream
        assert current is not None
        if not _needs_refresh(current, self._clock.now()) or current.refresh_token is None:
            return current  # another request refreshed while we waited
        try:
            response = await self._upstream.refresh(current.refresh_token)
            fresh = tokens_from_response(response, self._clock.now())
        except OIDCProviderError:
            logger.warning("upstream token refresh failed for grant %s", grant_id)
            return current
        fresh = fresh.model_copy(
            update={
                "refresh_token": fresh.refresh_token or current.refresh_token,
                "id_token": fresh.id_token or current.id_token,
            }
        )
        await self._repo.save_grant(grant.model_copy(update={"upstream": fresh}), remaining or 60)
        return fresh
