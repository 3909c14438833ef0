"""Token revocation, RFC 7009.

The SDK authenticates the client, finds the token through ``load_access_token`` then
``load_refresh_token`` and checks it belongs to that client (§2.1). Revoking either kind
revokes the whole grant (§2.1: "SHOULD also invalidate ... other tokens based on the same
authorization grant"): every verifier checks the grant on each request, so the revocation is
seen by all of them on the next request. The revocation leaves a tombstone that outlives every
token of the grant, so no concurrent refresh or upstream-token write can bring it back
(:meth:`..store.repository.Repository._write_unless_revoked`).
"""

from __future__ import annotations

from ..core.models import FederatedAccessToken, FederatedRefreshToken
from .context import Context
from .grants import revoke_grant


async def revoke(ctx: Context, token: FederatedAccessToken | FederatedRefreshToken) -> None:
    """RFC 7009 §2.1: revoking either token revokes the grant, hence every token of it."""
    await revoke_grant(ctx, token.grant_id, "grant.revoked", token.client_id)
    if isinstance(token, FederatedRefreshToken):
        await ctx.repo.delete_refresh_token(token.token)
