"""What each upstream preset changes, as data (issue 11).

A preset names an IdP family and carries its quirks, so a deployment is one line of
configuration: ``UpstreamSettings(preset="google", client_id=..., client_secret=...)``. The
request shaping lives in :mod:`mcp_oidc_provider.upstream.presets`; this table is read by the
settings validation too, so it sits in the core layer and does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

PresetName = Literal["oidc", "auth0", "okta", "keycloak", "entra", "google", "clerk", "github"]

#: Entra ID's multi-tenant endpoints; their discovery publishes ``{tenantid}`` in the issuer.
ENTRA_MULTI_TENANT = frozenset({"common", "organizations"})
ENTRA_TENANT_PLACEHOLDER = "{tenantid}"


@dataclass(frozen=True)
class PresetDefaults:
    #: Issuer used when none is configured (only for IdPs with one well-known issuer).
    issuer: str | None = None
    #: Scopes asked for when ``scopes`` is not configured.
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    #: Scopes this IdP refuses: removed from the authorization request.
    unsupported_scopes: frozenset[str] = frozenset()
    #: Authorization request parameters the IdP needs (configured ones win).
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    #: False for plain OAuth 2.0 providers: no ``openid`` scope, no ID token.
    oidc: bool = True


PRESETS: Mapping[PresetName, PresetDefaults] = {
    "oidc": PresetDefaults(),
    # Auth0: refresh tokens need offline_access plus "Allow Offline Access" on the API.
    "auth0": PresetDefaults(scopes=("openid", "email", "profile", "offline_access")),
    "okta": PresetDefaults(scopes=("openid", "email", "profile", "offline_access")),
    # Keycloak issues a refresh token without offline_access (which would make an offline session).
    "keycloak": PresetDefaults(),
    "entra": PresetDefaults(scopes=("openid", "email", "profile", "offline_access")),
    # Google refuses offline_access; these two parameters get a refresh token on every consent.
    "google": PresetDefaults(
        issuer="https://accounts.google.com",
        unsupported_scopes=frozenset({"offline_access"}),
        authorize_params={"access_type": "offline", "prompt": "consent"},
    ),
    "clerk": PresetDefaults(unsupported_scopes=frozenset({"offline_access"})),
    "github": PresetDefaults(issuer="https://github.com", scopes=("read:user", "user:email"), oidc=False),
}
