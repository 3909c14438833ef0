"""Who is calling: helpers for tools.

Inside a tool, the SDK's ``get_access_token()`` returns our :class:`FederatedAccessToken`:
``subject`` is the upstream user's ``sub`` and ``claims`` holds their ID token claims (as
mapped by the configured claims mapper) merged with our access token's claims.
:func:`get_upstream_tokens` returns that user's tokens at the upstream IdP, refreshed first
when they are about to expire and a refresh token is available.
"""

from __future__ import annotations

from typing import Protocol

from mcp.server.auth.middleware.auth_context import get_access_token

from .models import FederatedAccessToken
from .store import UpstreamTokens


class UpstreamTokenSource(Protocol):
    async def upstream_tokens_for(self, token: FederatedAccessToken) -> UpstreamTokens | None: ...


async def get_upstream_tokens() -> UpstreamTokens | None:
    """The current user's upstream IdP tokens, or None outside an authenticated request."""
    token = get_access_token()
    if not isinstance(token, FederatedAccessToken) or token._source is None:
        return None
    source: UpstreamTokenSource = token._source
    return await source.upstream_tokens_for(token)
