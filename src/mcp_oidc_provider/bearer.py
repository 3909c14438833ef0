"""The access-token checks both verifiers share, and their fail-closed policy.

RFC 9068 §4 (and RFC 8725): the signature with one of the authorization server's keys (done by
the caller, who owns the keys), ``typ`` is ``at+jwt``, then here: ``iss`` is the authorization
server, ``aud`` is one of the MCP servers we guard (RFC 8707 §2), ``exp`` and ``nbf`` hold, and
the grant behind the token is still live (revocation, RFC 7009 §2).

Fail closed: any unexpected failure refuses the token, names only the exception type in the
log and, for a store outage, reports it so the HTTP edge answers 503 rather than 401.
"""

from __future__ import annotations

import logging
from typing import Any

from .core.clock import CLOCK_SKEW_SECONDS
from .core.models import FederatedAccessToken
from .crypto.keys import InvalidJWT, SigningKeys
from .crypto.minting import ACCESS_TOKEN_TYP
from .store.failures import is_store_failure, report_store_outage
from .store.repository import Repository

logger = logging.getLogger("mcp_oidc_provider.bearer")


def check_access_token_claims(claims: dict[str, object], issuer: str, audiences: tuple[str, ...], now: float) -> bool:
    """RFC 9068 §4: issuer, audience, expiry; plus the claims we rely on."""
    exp, nbf, iss = claims.get("exp"), claims.get("nbf", claims.get("iat")), claims.get("iss")
    return (
        isinstance(iss, str)
        and iss.rstrip("/") == issuer.rstrip("/")
        and claims.get("aud") in audiences
        and isinstance(exp, int)
        and exp > now
        and (not isinstance(nbf, int) or nbf <= now + CLOCK_SKEW_SECONDS)
        and isinstance(claims.get("sub"), str)
        and isinstance(claims.get("client_id"), str)
        and isinstance(claims.get("gid"), str)
    )


async def access_token_from_claims(repo: Repository, token: str, claims: dict[str, Any]) -> FederatedAccessToken | None:
    """The SDK's view of a verified token, if its grant is still live (RFC 7009 §2): present,
    not expired and not tombstoned (:meth:`.store.repository.Repository.load_grant`), so a
    revocation is seen by both verifiers on the next request."""
    grant = await repo.load_grant(str(claims["gid"]))
    if grant is None or grant.client_id != claims["client_id"]:
        return None
    scope = claims.get("scope")
    return FederatedAccessToken(
        token=token,
        client_id=str(claims["client_id"]),
        scopes=scope.split() if isinstance(scope, str) else [],
        expires_at=int(claims["exp"]),
        resource=str(claims["aud"]),
        subject=str(claims["sub"]),
        claims={**grant.claims, **claims},
        grant_id=grant.grant_id,
    )


def refuse_after_failure(exc: BaseException) -> None:
    """Fail closed: the token is refused; a store outage is reported (503 at the edge), and
    nothing but the exception's type reaches the log."""
    logger.error("bearer check failed, token refused: %s", type(exc).__name__)
    if is_store_failure(exc):
        report_store_outage()


async def verify_access_token(
    keys: SigningKeys, repo: Repository, token: str, *, issuer: str, audiences: tuple[str, ...], now: float
) -> FederatedAccessToken | None:
    """The whole check with our own keys (integrated mode)."""
    try:
        claims = keys.verify(token, ACCESS_TOKEN_TYP)
    except InvalidJWT:
        return None
    if not check_access_token_claims(claims, issuer, audiences, now):
        return None
    return await access_token_from_claims(repo, token, claims)
