"""The token endpoint's grants after the SDK's checks: authorization code and refresh token.

The SDK checks (RFC 6749 §4.1.3, §6; RFC 7636 §4.6): client authentication, the code's
client and expiry, ``redirect_uri`` equality, the PKCE verifier, and that refreshed scopes
are within the original ones. We add:

- :func:`consume_code_once`: a code redeems once (RFC 6749 §4.1.2); a replayed code revokes
  every token issued from it (§10.5 "SHOULD revoke", RFC 9700 §4.5.3);
- :func:`rotate_refresh_token`: a refresh token is used once and replaced (OAuth 2.1 §4.3.1);
  presenting a rotated-away one revokes the grant (RFC 9700 §4.14.2);
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from ..core import audit
from ..core.errors import InvalidGrant, InvalidTarget
from ..core.models import FederatedAuthorizationCode, FederatedRefreshToken
from ..crypto.minting import mint_access_token, new_refresh_token
from ..store.records import GrantRecord, RefreshTokenRecord, SpentMarker
from .context import Context

#: The RFC 8707 ``resource`` form field of the current /token request, which the SDK does not
#: pass to the provider; the HTTP edge sets it (:mod:`..web.token_resource`) before the SDK's
#: handler runs, and :func:`ensure_resource_of_grant` reads it.
requested_resource: ContextVar[str | None] = ContextVar("mcp_oidc_provider_token_resource", default=None)


async def revoke_grant(ctx: Context, grant_id: str, event: audit.Event, client_id: str | None = None) -> None:
    if await ctx.repo.revoke_grant(grant_id):
        audit.emit(
            event, logging.WARNING if event != "grant.revoked" else logging.INFO, client_id=client_id, grant_id=grant_id
        )


# authorization_code grant


async def load_authorization_code(
    ctx: Context, client: OAuthClientInformationFull, code: str
) -> FederatedAuthorizationCode | None:
    if len(code) > 512:
        return None
    record = await ctx.repo.load_code(code)
    if record is None:
        spent = await ctx.repo.spent_code(code)
        if spent is not None:
            # RFC 6749 §4.1.2: a code used twice MUST be refused and SHOULD revoke its tokens.
            await revoke_grant(ctx, spent.grant_id, "code.replayed", client.client_id)
        return None
    if record.client_id != client.client_id:
        return None
    return FederatedAuthorizationCode(
        code=code,
        scopes=record.scopes,
        expires_at=record.expires_at,
        client_id=record.client_id,
        code_challenge=record.code_challenge,
        redirect_uri=record.redirect_uri,  # type: ignore[arg-type]
        redirect_uri_provided_explicitly=record.redirect_uri_provided_explicitly,
        resource=record.resource,
        subject=record.subject,
        grant_id=record.grant_id,
    )


async def consume_code_once(ctx: Context, code: str) -> None:
    """Claim the code; the loser of a concurrent redemption gets ``invalid_grant``."""
    record = await ctx.repo.claim_code(code)
    if record is None:
        raise InvalidGrant("authorization code is invalid or was already used")
    await ctx.repo.mark_code_spent(
        code, SpentMarker(grant_id=record.grant_id, spent_at=ctx.now()), ctx.settings.refresh_token_ttl
    )


async def load_live_grant(ctx: Context, grant_id: str, client_id: str) -> GrantRecord:
    grant = await ctx.repo.load_grant(grant_id)
    if grant is None or grant.client_id != client_id:
        raise InvalidGrant("the grant was revoked or has expired")
    return grant


def ensure_resource_of_grant(grant: GrantRecord) -> None:
    """RFC 8707 §2.2: a ``resource`` at /token must be one the grant was authorized for."""
    requested = requested_resource.get()
    if requested is not None and requested.rstrip("/") != grant.resource.rstrip("/"):
        raise InvalidTarget("The requested resource was not authorized for this grant")


async def issue_tokens(ctx: Context, grant: GrantRecord, scopes: list[str]) -> OAuthToken:
    now = int(ctx.now())
    lifetime = ctx.settings.access_token_ttl
    access_token, _ = mint_access_token(
        ctx.keys,
        issuer=ctx.issuer,
        subject=grant.subject,
        audience=grant.resource,
        client_id=grant.client_id,
        scopes=scopes,
        grant_id=grant.grant_id,
        issued_at=now,
        lifetime=lifetime,
    )
    refresh_token = new_refresh_token()
    refresh_ttl = ctx.settings.refresh_token_ttl
    await ctx.repo.save_grant(grant, refresh_ttl)
    await ctx.repo.save_refresh_token(
        refresh_token,
        RefreshTokenRecord(
            grant_id=grant.grant_id,
            client_id=grant.client_id,
            subject=grant.subject,
            scopes=scopes,
            resource=grant.resource,
            expires_at=now + refresh_ttl,
        ),
        refresh_ttl,
    )
    # expires_in is exact: Python MCP clients answer a 401 with a full new login, not a refresh.
    return OAuthToken(
        access_token=access_token,
        token_type="Bearer",
        expires_in=lifetime,
        refresh_token=refresh_token,
        scope=" ".join(scopes),
    )


async def exchange_authorization_code(
    ctx: Context, client: OAuthClientInformationFull, code: FederatedAuthorizationCode
) -> OAuthToken:
    grant = await load_live_grant(ctx, code.grant_id, client.client_id or "")
    ensure_resource_of_grant(grant)
    await consume_code_once(ctx, code.code)
    tokens = await issue_tokens(ctx, grant, code.scopes)
    audit.emit("token.issued", client_id=client.client_id, grant_id=grant.grant_id)
    return tokens


# refresh_token grant


async def load_refresh_token(
    ctx: Context, client: OAuthClientInformationFull, token: str
) -> FederatedRefreshToken | None:
    if len(token) > 512:
        return None
    record = await ctx.repo.load_refresh_token(token)
    if record is None:
        spent = await ctx.repo.spent_refresh_token(token)
        if spent is not None:
            await handle_refresh_token_reuse(ctx, spent, client.client_id)
        return None
    if record.client_id != client.client_id:
        return None
    if await ctx.repo.load_grant(record.grant_id) is None:
        return None
    return FederatedRefreshToken(
        token=token,
        client_id=record.client_id,
        scopes=record.scopes,
        expires_at=record.expires_at,
        resource=record.resource,
        subject=record.subject,
        grant_id=record.grant_id,
    )


async def handle_refresh_token_reuse(ctx: Context, spent: SpentMarker, client_id: str | None) -> None:
    """RFC 9700 §4.14.2: a rotated-away refresh token presented again means it leaked, so the
    grant is revoked; within a short grace window it is a client's duplicate concurrent
    refresh, refused without revoking (the winner of the race holds the new tokens)."""
    if ctx.now() - spent.spent_at <= ctx.settings.refresh_reuse_grace_seconds:
        audit.emit("refresh_token.concurrent_reuse", client_id=client_id, grant_id=spent.grant_id)
        return
    await revoke_grant(ctx, spent.grant_id, "refresh_token.reuse_detected", client_id)


async def rotate_refresh_token(ctx: Context, token: str) -> None:
    record = await ctx.repo.claim_refresh_token(token)
    if record is None:
        raise InvalidGrant("refresh token is invalid or was already used")
    await ctx.repo.mark_refresh_token_spent(
        token, SpentMarker(grant_id=record.grant_id, spent_at=ctx.now()), ctx.settings.refresh_token_ttl
    )


async def exchange_refresh_token(
    ctx: Context, client: OAuthClientInformationFull, token: FederatedRefreshToken, scopes: list[str]
) -> OAuthToken:
    grant = await load_live_grant(ctx, token.grant_id, client.client_id or "")
    ensure_resource_of_grant(grant)
    await rotate_refresh_token(ctx, token.token)
    tokens = await issue_tokens(ctx, grant, scopes or token.scopes)
    audit.emit("token.refreshed", client_id=client.client_id, grant_id=grant.grant_id)
    return tokens
