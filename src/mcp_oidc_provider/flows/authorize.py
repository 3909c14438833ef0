"""The authorization endpoint, after the SDK's checks: start the upstream login.

The SDK has already checked (RFC 6749 §4.1.1, OAuth 2.1 §4.1.1): the client exists, the
redirect URI is registered, ``response_type=code``, a PKCE S256 challenge is present, and the
scopes are within the client's. We add:

- :func:`ensure_resource_allowed`, RFC 8707 §2: ``resource`` names one of our MCP servers;
- :func:`ensure_code_challenge_well_formed`, RFC 7636 §4.2: 43 characters of base64url;
- a login transaction keyed by a fresh ``state`` carrying the client's request, our ``nonce``
  and our own PKCE verifier for the upstream leg (OIDC Core §3.1.2.1, RFC 7636 §4.1).
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from mcp.server.auth.provider import AuthorizationParams
from mcp.shared.auth import OAuthClientInformationFull

from ..core import audit
from ..core.errors import InvalidRequest, InvalidTarget, OIDCProviderError, to_authorize_error
from ..crypto.minting import new_secret_value, pkce_pair
from ..store.records import LoginTransaction
from .context import Context

CONSENT_PATH = "/consent"

_S256_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def ensure_resource_allowed(ctx: Context, resource: str | None) -> str:
    """RFC 8707 §2: refuse a resource we do not serve; default to our first one."""
    if resource is None:
        return ctx.settings.resource_urls[0]
    for allowed in ctx.settings.resource_urls:
        if resource.rstrip("/") == allowed.rstrip("/"):
            return allowed
    audit.emit("resource.refused", resource=resource[:200])
    raise InvalidTarget("The requested resource is not served by this authorization server")


def ensure_code_challenge_well_formed(challenge: str) -> None:
    """RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is exactly 43 characters."""
    if not _S256_CHALLENGE.match(challenge):
        raise InvalidRequest("code_challenge must be a base64url S256 challenge (RFC 7636 section 4.2)")


def granted_scopes(ctx: Context, client: OAuthClientInformationFull, requested: list[str] | None) -> list[str]:
    if requested is not None:
        return [s for s in requested if s]
    if client.scope:
        return client.scope.split()
    return list(ctx.settings.scopes)


async def begin_login(ctx: Context, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
    """Record the request as a login transaction and send the browser to the consent step."""
    try:
        resource = ensure_resource_allowed(ctx, params.resource)
        ensure_code_challenge_well_formed(params.code_challenge)
        state = new_secret_value()
        verifier, _ = pkce_pair()
        txn = LoginTransaction(
            client_id=client.client_id or "",
            redirect_uri=str(params.redirect_uri),
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            code_challenge=params.code_challenge,
            client_state=params.state,
            scopes=granted_scopes(ctx, client, params.scopes),
            resource=resource,
            nonce=new_secret_value(),
            code_verifier=verifier,
            created_at=ctx.now(),
        )
        await ctx.repo.start_login(state, txn, ctx.settings.login_transaction_ttl)
    except OIDCProviderError as exc:
        raise to_authorize_error(exc) from exc
    audit.emit("login.started", client_id=client.client_id)
    return f"{ctx.settings.issuer_url.rstrip('/')}{CONSENT_PATH}?{urlencode({'login': state})}"
