"""mcp-oidc-provider: real user login for MCP servers built on the official MCP Python SDK."""

from .clock import Clock, FrozenClock, SystemClock
from .context import default_claims_mapper
from .errors import ConfigurationError, OIDCProviderError
from .identity import get_upstream_tokens
from .keys import generate_jwks
from .models import FederatedAccessToken
from .outage import StoreOutageMiddleware
from .provider import OIDCProvider
from .settings import ProviderSettings, StaticClient, UpstreamSettings
from .store import UpstreamTokens, store_from_url
from .verifier import OIDCTokenVerifier

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
    "UpstreamSettings",
    "UpstreamTokens",
    "default_claims_mapper",
    "generate_jwks",
    "get_upstream_tokens",
    "store_from_url",
]

__version__ = "0.1.0"
