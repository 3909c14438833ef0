"""What every flow needs, in one frozen bag: configuration, store, keys, upstream, clock."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.claims import ClaimsMapper
from ..core.clock import Clock
from ..core.settings import ProviderSettings
from ..crypto.keys import SigningKeys
from ..store.repository import Repository
from ..upstream.protocol import UpstreamProvider


@dataclass(frozen=True)
class Context:
    settings: ProviderSettings
    #: Our issuer exactly as the SDK publishes it in its RFC 8414 document.
    issuer: str
    repo: Repository
    keys: SigningKeys
    upstream: UpstreamProvider
    clock: Clock
    claims_mapper: ClaimsMapper

    def now(self) -> float:
        return self.clock.now()
