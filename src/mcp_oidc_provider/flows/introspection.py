"""Token introspection, RFC 7662, for resource servers that do not verify our JWTs themselves.

Only a configured static client marked ``introspection`` may ask (§2.1: "the endpoint MUST
require some form of authorization"), with its secret, compared in constant time. The answer
for any token that is not live, ours and for one of our resources is just ``active: false``
(§2.2): revoked, expired, unknown and foreign tokens all look the same.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from ..bearer import check_access_token_claims
from ..core.settings import StaticClient
from ..crypto.keys import InvalidJWT
from ..crypto.minting import ACCESS_TOKEN_TYP
from .context import Context

INACTIVE: dict[str, Any] = {"active": False}
MAX_TOKEN_LENGTH = 8192
# Compared against when the client id is unknown, so that case costs what a wrong secret does.
_NO_SECRET = b"\x00" * 32


@dataclass(frozen=True)
class ClientCredentials:
    """What the caller presented: client_secret_basic or client_secret_post (RFC 6749 §2.3.1)."""

    client_id: str
    client_secret: str


def authenticate_introspector(ctx: Context, credentials: ClientCredentials | None) -> StaticClient | None:
    """The static client allowed to introspect, if these credentials are its own."""
    if credentials is None:
        return None
    client = ctx.settings.static_client(credentials.client_id)
    allowed = client is not None and client.introspection and client.client_secret is not None
    expected = (
        client.client_secret.get_secret_value().encode()
        if client is not None and client.client_secret is not None
        else _NO_SECRET
    )
    matches = hmac.compare_digest(credentials.client_secret.encode(), expected)
    return client if allowed and matches else None


async def introspect(ctx: Context, token: str, token_type_hint: str | None = None) -> dict[str, Any]:
    """RFC 7662 §2.2: the token's live metadata, or ``{"active": false}``."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return dict(INACTIVE)
    # §2.1: the hint only orders the search; the other kind is still tried.
    checks = (_refresh_token, _access_token) if token_type_hint == "refresh_token" else (_access_token, _refresh_token)
    for check in checks:
        answer = await check(ctx, token)
        if answer is not None:
            return answer
    return dict(INACTIVE)


async def _access_token(ctx: Context, token: str) -> dict[str, Any] | None:
    try:
        claims = ctx.keys.verify(token, ACCESS_TOKEN_TYP)
    except InvalidJWT:
        return None
    # RFC 9068 §4: our issuer, one of our audiences, not expired; then the grant is live (RFC 7009 §2).
    if not check_access_token_claims(claims, ctx.issuer, ctx.settings.resource_urls, ctx.now()):
        return None
    grant = await ctx.repo.load_grant(str(claims["gid"]))
    if grant is None or grant.client_id != claims["client_id"]:
        return None
    answer: dict[str, Any] = {
        "active": True,
        "client_id": claims["client_id"],
        "sub": claims["sub"],
        "aud": claims["aud"],
        "iss": ctx.issuer,
        "exp": claims["exp"],
        "token_type": "Bearer",
    }
    if isinstance(claims.get("scope"), str):
        answer["scope"] = claims["scope"]
    if isinstance(claims.get("iat"), int):
        answer["iat"] = claims["iat"]
    return answer


async def _refresh_token(ctx: Context, token: str) -> dict[str, Any] | None:
    record = await ctx.repo.load_refresh_token(token)
    if record is None or record.expires_at <= ctx.now():
        return None
    grant = await ctx.repo.load_grant(record.grant_id)
    if grant is None or grant.client_id != record.client_id:
        return None
    return {
        "active": True,
        "client_id": record.client_id,
        "sub": record.subject,
        "aud": record.resource,
        "iss": ctx.issuer,
        "exp": record.expires_at,
        "scope": " ".join(record.scopes),
        # RFC 7009 §2.1's name for the kind; RFC 6749 §5.1 types only access tokens.
        "token_type": "refresh_token",
    }
