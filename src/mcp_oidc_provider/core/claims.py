"""The claims policy: which upstream ID-token claims a grant keeps for tools."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

ClaimsMapper = Callable[[Mapping[str, Any]], Mapping[str, Any]]

#: OIDC Core §2 protocol claims: they describe the ID token, not the user.
PROTOCOL_CLAIMS = frozenset({"iss", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "azp", "jti", "sid"})


def default_claims_mapper(claims: Mapping[str, Any]) -> Mapping[str, Any]:
    """Keep the user's identity claims (``sub``, ``email``, ``name``...), drop protocol ones."""
    return {k: v for k, v in claims.items() if k not in PROTOCOL_CLAIMS}
