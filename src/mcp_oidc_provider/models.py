"""The SDK's token models, extended with the grant each one belongs to.

Every code and token carries its ``grant_id`` so that revoking the grant (on /revoke, on code
replay, on refresh-token reuse) revokes everything issued under it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp.server.auth.provider import AccessToken, AuthorizationCode, RefreshToken
from pydantic import PrivateAttr

if TYPE_CHECKING:
    from .identity import UpstreamTokenSource


class FederatedAuthorizationCode(AuthorizationCode):
    grant_id: str


class FederatedRefreshToken(RefreshToken):
    grant_id: str


class FederatedAccessToken(AccessToken):
    grant_id: str
    _source: Any = PrivateAttr(default=None)

    def bind_source(self, source: UpstreamTokenSource) -> FederatedAccessToken:
        self._source = source
        return self
