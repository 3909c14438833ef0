"""What every flow needs, in one frozen bag: configuration, store, keys, upstream, clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .clock import Clock
from .keys import SigningKeys
from .settings import ProviderSettings
from .store import Repository
from .upstream.client import UpstreamClient

ClaimsMapper = Callable[[Mapping[str, Any]], Mapping[str, Any]]

#: OIDC Core §2 protocol claims: they describe the ID token, not the user.
PROTOCOL_CLAIMS = frozenset({"iss", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "azp", "jti", "sid"})


def default_claims_mapper(claims: Mapping[str, Any]) -> Mapping[str, Any]:
    """Keep the user's identity claims (``sub``, ``email``, ``name``...), drop protocol ones."""
    return {k: v for k, v in claims.items() if k not in PROTOCOL_CLAIMS}


@dataclass(frozen=True)
class Context:
    settings: ProviderSettings
    #: Our issuer exactly as the SDK publishes it in its RFC 8414 document.
    issuer: str
    repo: Repository
    keys: SigningKeys
    upstream: UpstreamClient
    clock: Clock
    claims_mapper: ClaimsMapper

    def now(self) -> float:
        return self.clock.now()
