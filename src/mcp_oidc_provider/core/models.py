"""The SDK's token models, extended with the grant each one belongs to.

Every code and token carries its ``grant_id`` so that revoking the grant (on /revoke, on code
replay, on refresh-token reuse) revokes everything issued under it.
"""

from __future__ import annotations

from typing import Any, Protocol

from mcp.server.auth.provider import AccessToken, AuthorizationCode, RefreshToken
from mcp.shared.auth import InvalidRedirectUriError, OAuthClientInformationFull
from pydantic import AnyUrl, BaseModel, ConfigDict, PrivateAttr

from .redirect_policy import loopback_port_variant


class UpstreamTokens(BaseModel):
    """The user's tokens at the upstream IdP, as our tools may need them."""

    model_config = ConfigDict(frozen=True)

    access_token: str
    token_type: str = "Bearer"
    id_token: str | None = None
    refresh_token: str | None = None
    expires_at: float | None = None
    scope: str | None = None

    def __repr__(self) -> str:  # never print a token by accident
        return f"UpstreamTokens(token_type={self.token_type!r}, expires_at={self.expires_at!r})"

    __str__ = __repr__


class FederatedAuthorizationCode(AuthorizationCode):
    grant_id: str


class FederatedRefreshToken(RefreshToken):
    grant_id: str


class UpstreamTokenSource(Protocol):
    """Who can hand a tool the upstream tokens of an access token's grant (provider or verifier)."""

    async def upstream_tokens_for(self, token: FederatedAccessToken) -> UpstreamTokens | None: ...


class FederatedAccessToken(AccessToken):
    grant_id: str
    _source: Any = PrivateAttr(default=None)

    def bind_source(self, source: UpstreamTokenSource) -> FederatedAccessToken:
        self._source = source
        return self


class FederatedClient(OAuthClientInformationFull):
    """A registered client whose loopback redirect URIs accept any port (RFC 8252 §7.3).

    The SDK's check is an exact match; native clients such as mcp-remote pick a new port on
    every run. Non-loopback URIs keep the exact match.
    """

    def validate_redirect_uri(self, redirect_uri: AnyUrl | None) -> AnyUrl:
        if redirect_uri is not None and self.redirect_uris and redirect_uri not in self.redirect_uris:
            if any(loopback_port_variant(str(r), str(redirect_uri)) for r in self.redirect_uris):
                return redirect_uri
            raise InvalidRedirectUriError("redirect_uri is not registered for this client")
        return super().validate_redirect_uri(redirect_uri)
