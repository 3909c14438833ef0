"""mcp-oidc-provider: real user login for MCP servers built on the official MCP Python SDK."""

from .core.claims import default_claims_mapper
from .core.clock import Clock, FrozenClock, SystemClock
from .core.errors import ConfigurationError, OIDCProviderError, UpstreamSessionEnded, UpstreamTemporarilyUnavailable
from .core.models import FederatedAccessToken, UpstreamTokens
from .core.settings import ProviderSettings, StaticClient, UpstreamSettings
from .crypto.keys import generate_jwks
from .provider import OIDCProvider
from .store.backends import store_from_url
from .upstream.vault import get_upstream_tokens
from .verifier import OIDCTokenVerifier
from .web.outage import StoreOutageMiddleware

__all__ = [
    "Clock",
    "ConfigurationError",
    "FederatedAccessToken",
    "FrozenClock",
    "OIDCProvider",
    "OIDCProviderError",
    "OIDCTokenVerifier",
    "ProviderSettings",
    "StaticClient",
    "StoreOutageMiddleware",
    "SystemClock",
    "UpstreamSessionEnded",
    "UpstreamSettings",
    "UpstreamTemporarilyUnavailable",
    "UpstreamTokens",
    "default_claims_mapper",
    "generate_jwks",
    "get_upstream_tokens",
    "store_from_url",
]

__version__ = "0.1.0"
