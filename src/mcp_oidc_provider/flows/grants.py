"""The token endpoint's grants after the SDK's checks: authorization code and refresh token.

The SDK checks (RFC 6749 §4.1.3, §6; RFC 7636 §4.6): client authentication, the code's
client and expiry, ``redirect_uri`` equality, the PKCE verifier, and that refreshed scopes
are within the original ones. We add:

- :func:`consume_code_once`: a code redeems once (RFC 6749 §4.1.2); a replayed code revokes
  every token issued from it (§10.5 "SHOULD revoke", RFC 9700 §4.5.3);
- :func:`rotate_refresh_token`: a refresh token is used once and replaced (OAuth 2.1 §4.3.1);
  presenting a rotated-away one revokes the grant (RFC 9700 §4.14.2);
- the grant life cycle (issue 8 §1, §3): a grant ends ``grant_max_lifetime`` after the login
  whatever the refreshes (:func:`grant_expiry`); a refresh never rewrites the grant; it
  re-checks the user's session at the IdP at most every ``upstream_recheck_seconds``
  (:func:`ensure_upstream_session`); at most ``refresh_rate_limit_per_minute`` refreshes per
  grant and process (:class:`RefreshRateLimiter`); revocation leaves a tombstone that every
  later write checks (:meth:`..store.repository.Repository._write_unless_revoked`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from contextvars import ContextVar

from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from ..core import audit
from ..core.errors import InvalidGrant, InvalidRequest, InvalidTarget
from ..core.models import FederatedAuthorizationCode, FederatedRefreshToken
from ..crypto.minting import mint_access_token, new_refresh_token
from ..store.failures import is_store_failure
from ..store.records import GrantRecord, RefreshTokenRecord, SpentMarker
from ..upstream.vault import UpstreamTokenService
from .context import Context
from .registration import mark_client_used

logger = logging.getLogger("mcp_oidc_provider.grants")

#: The RFC 8707 ``resource`` form field of the current /token request, which the SDK does not
#: pass to the provider; the HTTP edge sets it (:mod:`..web.token_resource`) before the SDK's
#: handler runs, and :func:`ensure_resource_of_grant` reads it.
requested_resource: ContextVar[str | None] = ContextVar("mcp_oidc_provider_token_resource", default=None)


async def revoke_grant(ctx: Context, grant_id: str, event: audit.Event, client_id: str | None = None) -> None:
    """RFC 7009 §2.1: the grant and every token of it; a tombstone makes it stick."""
    if await ctx.repo.revoke_grant(grant_id, ctx.settings.tombstone_ttl, ctx.now()):
        audit.emit(
            event, logging.WARNING if event != "grant.revoked" else logging.INFO, client_id=client_id, grant_id=grant_id
        )


def grant_expiry(ctx: Context, grant: GrantRecord) -> float:
    """The grant's absolute end: ``grant_max_lifetime`` after the login, never renewed."""
    return grant.expires_at if grant.expires_at is not None else grant.created_at + ctx.settings.grant_max_lifetime


def bounded_ttl(ctx: Context, grant: GrantRecord, ttl: float) -> float:
    """A TTL that does not outlive the grant (issue 8 §4: no 30-day record per rotation)."""
    return min(ttl, grant_expiry(ctx, grant) - ctx.now())


class RefreshRateLimiter:
    """At most ``limit`` refreshes per grant per minute, in this process (a sliding window).

    Per process, not per deployment: with N replicas a grant gets at most N x ``limit``. It
    bounds what one stolen or looping refresh token can make the store write; each refresh
    writes a bounded number of records, each with a TTL within the grant's life."""

    def __init__(self, max_grants: int = 10_000) -> None:
        self._windows: OrderedDict[str, deque[float]] = OrderedDict()
        self._max = max_grants

    def allow(self, grant_id: str, limit: int, now: float) -> bool:
        if limit <= 0:
            return True
        window = self._windows.pop(grant_id, None) or deque()
        while window and window[0] <= now - 60:
            window.popleft()
        self._windows[grant_id] = window
        if len(self._windows) > self._max:
            self._windows.popitem(last=False)
        if len(window) >= limit:
            return False
        window.append(now)
        return True


refresh_rate_limiter = RefreshRateLimiter()


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


async def consume_code_once(ctx: Context, code: str, grant_id: str, client_id: str | None) -> None:
    """Claim the code. The loser of a concurrent redemption is a replay too: two parties hold
    the code, so it gets ``invalid_grant`` and the grant is revoked (RFC 6749 §4.1.2)."""
    record = await ctx.repo.claim_code(code)
    if record is None:
        await revoke_grant(ctx, grant_id, "code.replayed", client_id)
        raise InvalidGrant("authorization code is invalid or was already used")
    ttl = min(ctx.settings.refresh_token_ttl, ctx.settings.grant_max_lifetime)
    await ctx.repo.mark_code_spent(code, SpentMarker(grant_id=record.grant_id, spent_at=ctx.now()), ttl)


async def load_live_grant(ctx: Context, grant_id: str, client_id: str) -> GrantRecord:
    grant = await ctx.repo.load_grant(grant_id)
    if grant is None or grant.client_id != client_id or grant_expiry(ctx, grant) <= ctx.now():
        raise InvalidGrant("the grant was revoked or has expired")
    return grant


def ensure_resource_of_grant(grant: GrantRecord) -> None:
    """RFC 8707 §2.2: a ``resource`` at /token must be one the grant was authorized for."""
    requested = requested_resource.get()
    if requested is not None and requested.rstrip("/") != grant.resource.rstrip("/"):
        raise InvalidTarget("The requested resource was not authorized for this grant")


async def issue_tokens(ctx: Context, grant: GrantRecord, scopes: list[str], with_refresh: bool = True) -> OAuthToken:
    """New access and refresh tokens; the grant record is not written (it is immutable).
    ``with_refresh=False``: the client did not register the ``refresh_token`` grant, so it gets
    none (RFC 6749 §5.1 "OPTIONAL"; RFC 7591 §2 ``grant_types``)."""
    now = int(ctx.now())
    remaining = int(grant_expiry(ctx, grant)) - now
    if remaining < 1:
        raise InvalidGrant("the grant has expired")
    lifetime = min(ctx.settings.access_token_ttl, remaining)
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
    if not with_refresh:
        return OAuthToken(access_token=access_token, token_type="Bearer", expires_in=lifetime, scope=" ".join(scopes))
    refresh_token = new_refresh_token()
    refresh_ttl = min(ctx.settings.refresh_token_ttl, remaining)
    saved = await ctx.repo.save_refresh_token(
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
    if not saved:  # revoked while we worked: the write was undone, nothing is handed out
        raise InvalidGrant("the grant was revoked")
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
    await consume_code_once(ctx, code.code, code.grant_id, client.client_id)
    found = await ctx.repo.load_grant_and_upstream(grant.grant_id)
    if found is None:
        raise InvalidGrant("the grant was revoked or has expired")
    full, upstream, _ = found
    # The grant lived as long as its code; now it gets its whole, absolute life (written once
    # more, with the tombstone re-checked after the write).
    full = full.model_copy(update={"expires_at": grant_expiry(ctx, full)})
    checked_at = upstream.checked_at if upstream is not None else None
    ttl = grant_expiry(ctx, full) - ctx.now()
    if ttl < 1 or not await ctx.repo.save_grant(full, ttl, upstream_checked_at=checked_at):
        raise InvalidGrant("the grant was revoked or has expired")
    tokens = await issue_tokens(ctx, full, code.scopes, "refresh_token" in (client.grant_types or []))
    await mark_client_used(ctx, client.client_id or "")
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


async def rotate_refresh_token(ctx: Context, grant: GrantRecord, token: str) -> None:
    record = await ctx.repo.claim_refresh_token(token)
    if record is None:
        raise InvalidGrant("refresh token is invalid or was already used")
    # The spent marker lives only as long as the grant could: replay after that finds nothing
    # to revoke (issue 8 §4, "refresh storm").
    ttl = bounded_ttl(ctx, grant, ctx.settings.refresh_token_ttl)
    try:
        await ctx.repo.mark_refresh_token_spent(
            token, SpentMarker(grant_id=record.grant_id, spent_at=ctx.now()), max(ttl, 1)
        )
    except Exception as exc:
        # The token is consumed and its successor stored: hand it out. Only replay detection
        # of this one token is lost, and only while the store is failing.
        if not is_store_failure(exc):
            raise
        logger.warning("refresh token consumed but not marked spent: %s", type(exc).__name__)


async def ensure_upstream_session(ctx: Context, grant: GrantRecord) -> None:
    """Issue 8 §3: when the grant holds an upstream refresh token, confirm the user's session at
    the IdP at most every ``upstream_recheck_seconds`` by refreshing upstream.

    ``invalid_grant`` there revokes the grant (``upstream.session_ended``, by the vault) and our
    refresh answers ``invalid_grant``. An unreachable IdP is not a disabled user: the refresh
    goes on for ``upstream_outage_grace_seconds`` past the due check (fail open, audited
    ``upstream.recheck_failed``); after that it is refused with ``invalid_grant`` but nothing is
    revoked or consumed, so the same refresh token works once the IdP answers again."""
    settings = ctx.settings
    vault = UpstreamTokenService(ctx.repo, ctx.upstream, ctx.clock, tombstone_ttl=settings.tombstone_ttl)
    outcome = await vault.recheck(grant.grant_id, settings.upstream_recheck_seconds)
    if outcome.kind in ("refreshed", "none"):
        return
    if outcome.kind == "ended":
        raise InvalidGrant("The user's session at the identity provider has ended; sign in again")
    if outcome.kind == "revoked":
        raise InvalidGrant("the grant was revoked or has expired")
    found = await ctx.repo.load_upstream(grant.grant_id)
    checked_at = found[1].checked_at if found is not None else grant.created_at
    audit.emit("upstream.recheck_failed", logging.WARNING, client_id=grant.client_id, grant_id=grant.grant_id)
    if ctx.now() - checked_at > settings.upstream_recheck_seconds + settings.upstream_outage_grace_seconds:
        raise InvalidGrant("The identity provider could not confirm the session; try again later")


async def exchange_refresh_token(
    ctx: Context, client: OAuthClientInformationFull, token: FederatedRefreshToken, scopes: list[str]
) -> OAuthToken:
    grant = await load_live_grant(ctx, token.grant_id, client.client_id or "")
    ensure_resource_of_grant(grant)
    # Refused before the token is consumed, so the client can retry with the same one.
    if not refresh_rate_limiter.allow(grant.grant_id, ctx.settings.refresh_rate_limit_per_minute, ctx.now()):
        audit.emit("refresh.rate_limited", logging.WARNING, client_id=client.client_id, grant_id=grant.grant_id)
        raise InvalidRequest("Too many refreshes for this grant; retry in a minute")
    await ensure_upstream_session(ctx, grant)
    # The new tokens are stored before the old refresh token is consumed: a store failure in
    # between leaves the old one valid for a retry, never a client holding nothing (OAuth 2.1
    # §4.3.1 rotation without losing the grant).
    tokens = await issue_tokens(ctx, grant, scopes or token.scopes)
    try:
        await rotate_refresh_token(ctx, grant, token.token)
    except InvalidGrant:
        if tokens.refresh_token:  # another request consumed it first: ours never leaves
            await ctx.repo.delete_refresh_token(tokens.refresh_token)
        raise
    audit.emit("token.refreshed", client_id=client.client_id, grant_id=grant.grant_id)
    return tokens
