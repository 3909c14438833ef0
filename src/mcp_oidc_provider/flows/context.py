"""What every flow needs, in one frozen bag: configuration, store, keys, upstream, clock."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..cimd import CimdResolver, is_client_id_url
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
    #: Resolves https ``client_id`` URLs (CIMD); None when the deployment turned CIMD off.
    cimd: CimdResolver | None = None

    def now(self) -> float:
        return self.clock.now()

    def is_trusted_client(self, client_id: str) -> bool:
        """Trusted clients skip consent: configured ones, and CIMD clients on a trusted domain."""
        if self.settings.is_trusted_client(client_id):
            return True
        if self.cimd is None or not is_client_id_url(client_id):
            return False
        return self.cimd.policy.decide((urlsplit(client_id).hostname or "").lower()) == "trusted"
