"""Validation of the upstream ID token, OIDC Core §3.1.3.7.

Checked: the signature against the upstream JWKS with an algorithm the IdP advertises (never
``none`` nor an HMAC, RFC 8725 §3.1); ``iss`` equals the discovered issuer (step 2); ``aud``
contains our client id (step 3) and, with several audiences, ``azp`` is our client id (steps
4-5); ``exp`` in the future (step 9); ``iat`` present (step 10); ``nonce`` equals the one we
sent (step 11); ``sub`` present (§2).

Entra ID's multi-tenant endpoint (issue 11) publishes ``https://login.microsoftonline.com/
{tenantid}/v2.0``: with ``issuer_template`` the expected ``iss`` is that template filled with
the signed token's own ``tid``, and ``allowed_tenants`` (when not empty) must contain the ``tid``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from ..core.clock import CLOCK_SKEW_SECONDS
from ..core.errors import AccessDenied, UpstreamIdTokenInvalid
from ..core.presets import ENTRA_TENANT_PLACEHOLDER

ASYMMETRIC_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})


def allowed_algorithms(advertised: tuple[str, ...]) -> list[str]:
    algs = [a for a in advertised if a in ASYMMETRIC_ALGS]
    return algs or ["RS256"]


def validate_id_token(
    id_token: str,
    *,
    keys: KeySet,
    algorithms: list[str],
    issuer: str,
    client_id: str,
    nonce: str,
    now: Callable[[], float],
    issuer_template: str | None = None,
    allowed_tenants: tuple[str, ...] = (),
) -> dict[str, Any]:
    try:
        decoded = jwt.decode(id_token, keys, algorithms=algorithms)
    except (JoseError, ValueError, TypeError, RecursionError) as exc:
        raise UpstreamIdTokenInvalid("The identity provider's ID token could not be verified") from exc
    claims = dict(decoded.claims)
    tenant = claims.get("tid")
    if issuer_template is not None:
        if not isinstance(tenant, str) or not tenant or "/" in tenant:
            raise UpstreamIdTokenInvalid("The identity provider's ID token names no tenant")
        issuer = issuer_template.replace(ENTRA_TENANT_PLACEHOLDER, tenant)
    registry = JWTClaimsRegistry(
        now=lambda: int(now()),
        leeway=CLOCK_SKEW_SECONDS,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(claims)
    except (JoseError, ValueError, TypeError, RecursionError) as exc:
        raise UpstreamIdTokenInvalid("The identity provider's ID token failed validation") from exc
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise UpstreamIdTokenInvalid("The identity provider's ID token has an unexpected authorized party")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise UpstreamIdTokenInvalid("The identity provider's ID token has no subject")
    if allowed_tenants and tenant not in allowed_tenants:
        raise AccessDenied("Accounts of this organization may not sign in here")
    return claims
