"""The upstream IdP's redirect back to us, OIDC Core §3.1.2.5-§3.1.3.7.

The flow, as named checks:

1. :func:`claim_login_transaction`: the ``state`` must name a live login of this browser
   (:func:`ensure_same_browser`) that was approved (:func:`is_approved`: the marker written at
   the consent step); it is consumed, so a replayed, forged, transplanted or never approved
   callback fails (RFC 6749 §10.12, RFC 9700 §4.7, MCP security best practices);
2. :func:`ensure_no_upstream_error`: an IdP error becomes the client's OAuth error;
3. exchange the code upstream with our PKCE verifier (RFC 7636 §4.5);
4. the user's identity (:meth:`.upstream.protocol.UpstreamProvider.identity`: the ID token);
5. :func:`record_grant_and_code`: store the grant (user, claims, upstream tokens) and a
   single-use code bound to the client, redirect URI, PKCE challenge and resource;
6. redirect to the client with ``code``, its ``state`` and ``iss`` (RFC 9207 §2).

Any failure after step 1 is an OAuth error redirect to the client (RFC 6749 §4.1.2.1), never
a bare error page; only a callback we cannot tie to a client gets a 400 here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from ..core import audit
from ..core.errors import (
    AccessDenied,
    OIDCProviderError,
    UnknownLoginTransaction,
    UpstreamError,
    UpstreamUnavailable,
    authorize_error_code,
)
from ..crypto.minting import new_code, new_grant_id
from ..store.records import CodeRecord, GrantRecord, LoginTransaction
from ..upstream.client import tokens_from_response
from .context import Context
from .login import client_redirect, ensure_same_browser, is_approved, is_plausible_login_id, verified_binding

logger = logging.getLogger("mcp_oidc_provider.callback")

#: Upstream errors that mean "the user did not log in or consent" (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6).
_DENIALS = frozenset(
    {"access_denied", "login_required", "consent_required", "interaction_required", "account_selection_required"}
)


@dataclass(frozen=True)
class CallbackResult:
    redirect_to: str | None = None
    error: str | None = None
    error_description: str | None = None


async def claim_login_transaction(ctx: Context, state: str | None, browser: str | None) -> LoginTransaction:
    """The ``state`` must name a live, approved login owned by this browser (its verified
    binding id); it is consumed once, with its approval marker."""
    if not is_plausible_login_id(state):
        raise UnknownLoginTransaction("The login request is missing or malformed; start again from your application")
    found = await ctx.repo.load_login(state)
    if found is None:
        audit.emit("login.unknown_state", logging.WARNING)
        raise UnknownLoginTransaction("This login has expired or was already used; start again from your application")
    ensure_same_browser(ctx, found[0], browser)
    if not await is_approved(ctx, state, browser, found[0]):
        audit.emit("login.unapproved", logging.WARNING, client_id=found[0].client_id)
        raise UnknownLoginTransaction(
            "This login was not approved on the consent page; start again from your application"
        )
    txn = await ctx.repo.claim_login(state)
    if txn is None:
        raise UnknownLoginTransaction("This login was already used; start again from your application")
    await ctx.repo.delete_login_approval(state)
    return txn


def ensure_no_upstream_error(query: Mapping[str, str]) -> None:
    error = query.get("error")
    if error is None:
        return
    if error in _DENIALS:
        raise AccessDenied("The user denied the request at the identity provider")
    if error == "temporarily_unavailable":
        raise UpstreamUnavailable("The identity provider is temporarily unavailable")
    raise UpstreamError("The identity provider could not complete the login")


async def record_grant_and_code(
    ctx: Context, txn: LoginTransaction, claims: Mapping[str, object], token: dict[str, object]
) -> str:
    now = ctx.now()
    subject = str(claims["sub"])
    grant = GrantRecord(
        grant_id=new_grant_id(),
        client_id=txn.client_id,
        subject=subject,
        scopes=txn.scopes,
        resource=txn.resource,
        claims=dict(ctx.claims_mapper(claims)),
        upstream=tokens_from_response(dict(token), now),
        created_at=now,
    )
    code = new_code()
    ttl = ctx.settings.authorization_code_ttl
    # The grant lives only as long as its code until the code is redeemed (then it is extended).
    await ctx.repo.save_grant(grant, ttl + 5)
    # issue 10 item 5: findable by user and by client for as long as the grant can live.
    await ctx.repo.index_grant(grant, ctx.settings.grant_max_lifetime)
    await ctx.repo.save_code(
        code,
        CodeRecord(
            grant_id=grant.grant_id,
            client_id=txn.client_id,
            subject=subject,
            scopes=txn.scopes,
            resource=txn.resource,
            code_challenge=txn.code_challenge,
            redirect_uri=txn.redirect_uri,
            redirect_uri_provided_explicitly=txn.redirect_uri_provided_explicitly,
            expires_at=now + ttl,
        ),
        ttl,
    )
    audit.emit("code.issued", client_id=txn.client_id, grant_id=grant.grant_id, subject=subject)
    return code


async def complete_login(ctx: Context, query: Mapping[str, str], binding_cookie: str | None) -> CallbackResult:
    try:
        txn = await claim_login_transaction(ctx, query.get("state"), verified_binding(ctx, binding_cookie))
    except UnknownLoginTransaction as exc:
        return CallbackResult(error=exc.code, error_description=exc.description)
    try:
        ensure_no_upstream_error(query)
        upstream_code = query.get("code")
        if not upstream_code:
            raise UpstreamError("The identity provider returned no authorization code")
        token = await ctx.upstream.exchange_code(code=upstream_code, code_verifier=txn.code_verifier)
        claims = await ctx.upstream.identity(token, txn.nonce)
        code = await record_grant_and_code(ctx, txn, claims, token)
    except OIDCProviderError as exc:
        event: audit.Event = "upstream.unreachable" if isinstance(exc, UpstreamUnavailable) else "upstream.login_failed"
        audit.emit(
            event, logging.WARNING, client_id=txn.client_id, error=authorize_error_code(exc), reason=type(exc).__name__
        )
        return CallbackResult(
            redirect_to=client_redirect(ctx, txn, error=authorize_error_code(exc), error_description=exc.description)
        )
    audit.emit("login.completed", client_id=txn.client_id)
    return CallbackResult(redirect_to=client_redirect(ctx, txn, code=code))
