"""Minting what we issue: random codes and refresh tokens, JWT access tokens, client secrets.

- Authorization codes: 256 bits (RFC 6749 §10.10 asks for at least 128, the SDK for 160).
- Refresh tokens: 256 bits, opaque, rotated on every use (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2).
- Access tokens: JWTs per RFC 9068 §2: header ``typ: at+jwt`` and ``kid``; claims ``iss``,
  ``sub``, ``aud``, ``client_id``, ``scope``, ``iat``, ``exp``, ``jti``, plus ``gid``, the grant
  they belong to, so revoking the grant revokes them. No personal data goes into them.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from .derivation import mac_b64
from .keys import SigningKeys

ACCESS_TOKEN_TYP = "at+jwt"


def new_secret_value(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def new_code() -> str:
    return new_secret_value(32)


def new_refresh_token() -> str:
    return new_secret_value(32)


def new_grant_id() -> str:
    return secrets.token_urlsafe(16)


def pkce_pair() -> tuple[str, str]:
    """RFC 7636 §4.1-4.2: a 43-character verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def derive_client_secret(seed: bytes, client_id: str, issued_at: int) -> str:
    """A confidential client's secret, derived rather than stored.

    The SDK authenticates clients by comparing the presented secret with the one
    ``get_client`` returns, so the provider must be able to produce it; deriving it with an
    HMAC under the server's secret seed means the store never holds it.
    """
    return mac_b64(seed, "client-secret", client_id, str(issued_at))


def mint_access_token(
    keys: SigningKeys,
    *,
    issuer: str,
    subject: str,
    audience: str,
    client_id: str,
    scopes: list[str],
    grant_id: str,
    issued_at: int,
    lifetime: int,
) -> tuple[str, dict[str, Any]]:
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "client_id": client_id,
        "scope": " ".join(scopes),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + lifetime,
        "jti": new_secret_value(16),
        "gid": grant_id,
    }
    return keys.sign(claims, ACCESS_TOKEN_TYP), claims
