"""OpenID Connect Discovery 1.0 of the upstream issuer.

§4: the document lives at ``{issuer}/.well-known/openid-configuration``; §4.3: its ``issuer``
MUST be identical to the issuer we asked for, or the document is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
from pydantic import BaseModel, ConfigDict, ValidationError

from ..core.errors import UpstreamError, UpstreamUnavailable


class UpstreamMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    revocation_endpoint: str | None = None
    id_token_signing_alg_values_supported: tuple[str, ...] = ("RS256",)
    code_challenge_methods_supported: tuple[str, ...] | None = None
    # issue 11: read by `mcp-oidc-provider doctor`
    response_types_supported: tuple[str, ...] | None = None
    grant_types_supported: tuple[str, ...] | None = None
    scopes_supported: tuple[str, ...] | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] | None = None


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


async def discover(
    http: httpx2.AsyncClient, issuer: str, accept_issuer: Callable[[str], bool] | None = None
) -> UpstreamMetadata:
    """Fetch and check the upstream's metadata; errors name the issuer, never a secret.

    ``accept_issuer`` replaces the exact comparison (Entra ID's multi-tenant template)."""
    try:
        response = await http.get(discovery_url(issuer))
    except httpx2.HTTPError as exc:
        raise UpstreamUnavailable(f"upstream IdP {issuer} is unreachable ({type(exc).__name__})") from exc
    if response.status_code != 200:
        raise UpstreamUnavailable(
            f"upstream IdP {issuer} answered HTTP {response.status_code} for its OpenID configuration"
        )
    try:
        data: Any = response.json()
        metadata = UpstreamMetadata.model_validate(data)
    except (ValueError, ValidationError) as exc:
        raise UpstreamError(f"upstream IdP {issuer} published an invalid OpenID configuration") from exc
    accepted = accept_issuer(metadata.issuer) if accept_issuer else metadata.issuer.rstrip("/") == issuer.rstrip("/")
    if not accepted:
        raise UpstreamError(f"upstream IdP {issuer} published a different issuer ({metadata.issuer}); refusing it")
    return metadata
