"""Our OAuth client at an upstream token endpoint (authlib), and what its failures mean.

One place maps every failure of the code exchange (RFC 6749 §4.1.3) and of the refresh
(§6) to our errors, for every upstream (OIDC and GitHub):

- unreachable: :class:`UpstreamUnavailable`; on a refresh also 5xx, 429 and
  ``temporarily_unavailable``/``server_error`` (not the user's fault: access goes on for the
  outage grace period);
- ``invalid_grant`` on a refresh (§5.2): :class:`UpstreamGrantInvalid`, the user's session or
  authorization at the IdP is gone;
- anything else: :class:`UpstreamError`. No value of the IdP's answer reaches a message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx2
from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]
from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749 import OAuth2Error  # type: ignore[import-untyped]

from ..core.errors import UpstreamError, UpstreamGrantInvalid, UpstreamUnavailable
from ..core.settings import UpstreamSettings
from .shaping import request_scopes

logger = logging.getLogger("mcp_oidc_provider.upstream")

#: What authlib's httpx integration raises for a refused or malformed token response.
_REFUSALS = (OAuth2Error, OAuthError, httpx2.HTTPError, ValueError, KeyError, TypeError)


def oauth_client(settings: UpstreamSettings, redirect_uri: str) -> AsyncOAuth2Client:
    """RFC 6749 §2.3.1 client authentication as configured; our PKCE S256 (RFC 7636 §4.3)."""
    secret = settings.client_secret.get_secret_value() if settings.client_secret else None
    return AsyncOAuth2Client(
        client_id=settings.client_id,
        client_secret=secret,
        token_endpoint_auth_method=settings.token_endpoint_auth_method,
        redirect_uri=redirect_uri,
        scope=" ".join(request_scopes(settings)),
        code_challenge_method="S256",
        timeout=settings.timeout_seconds,
    )


def is_outage(exc: BaseException) -> bool:
    """A 5xx or 429, or RFC 6749 §5.2 ``temporarily_unavailable``/``server_error``."""
    if isinstance(exc, httpx2.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return getattr(exc, "error", None) in ("temporarily_unavailable", "server_error")


async def exchange_code(
    settings: UpstreamSettings,
    redirect_uri: str,
    token_endpoint: str,
    *,
    code: str,
    code_verifier: str,
    idp: str = "The identity provider",
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """RFC 6749 §4.1.3 with our PKCE verifier (RFC 7636 §4.5)."""
    try:
        async with oauth_client(settings, redirect_uri) as oauth:
            token = await oauth.fetch_token(
                token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
                redirect_uri=redirect_uri,
                headers=dict(headers or {}),
            )
    except httpx2.TransportError as exc:
        raise UpstreamUnavailable(f"{idp} could not be reached") from exc
    except _REFUSALS as exc:
        logger.warning("upstream token endpoint refused the code: %s", type(exc).__name__)
        raise UpstreamError(f"{idp} refused to complete the login") from exc
    return dict(token)


async def refresh(
    settings: UpstreamSettings,
    redirect_uri: str,
    token_endpoint: str,
    refresh_token: str,
    *,
    idp: str = "The identity provider",
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """RFC 6749 §6; ``invalid_grant`` means the user's session at the IdP ended (§5.2)."""
    try:
        async with oauth_client(settings, redirect_uri) as oauth:
            token = await oauth.refresh_token(token_endpoint, refresh_token=refresh_token, headers=dict(headers or {}))
    except httpx2.TransportError as exc:
        raise UpstreamUnavailable(f"{idp} could not be reached") from exc
    except _REFUSALS as exc:
        if is_outage(exc):
            raise UpstreamUnavailable(f"{idp} is temporarily unavailable") from exc
        if getattr(exc, "error", None) == "invalid_grant":
            raise UpstreamGrantInvalid(f"{idp} ended the user's session") from exc
        raise UpstreamError(f"{idp} refused to refresh the tokens") from exc
    return dict(token)
