"""GitHub as the upstream IdP: OAuth 2.0 without OpenID Connect, identity from its REST API.

GitHub publishes no discovery document, no JWKS and no ID token. So the user is who GitHub's
``GET /user`` says the access token belongs to (``sub`` is the numeric account id, which never
changes, unlike the ``login``), and the e-mail is the primary, verified one of
``GET /user/emails`` (scope ``user:email``). The login is still bound to this browser and this
request by our ``state`` and PKCE (RFC 7636; GitHub checks S256 challenges), so no ``nonce``
is needed. GitHub Enterprise Server: set the issuer to ``https://HOST`` (API at ``/api/v3``).

Endpoints: https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx2

from ..core.clock import Clock
from ..core.errors import UpstreamError, UpstreamUnavailable
from ..core.settings import UpstreamSettings
from . import token_endpoint
from .shaping import authorize_params
from .token_endpoint import oauth_client

logger = logging.getLogger("mcp_oidc_provider.upstream")

GITHUB_COM = "https://github.com"
#: GitHub answers its token endpoint in form encoding unless asked for JSON.
_JSON = {"Accept": "application/json"}
_API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


def github_endpoints(issuer: str) -> tuple[str, str, str]:
    """(authorization endpoint, token endpoint, REST API base) for github.com or a GHES host."""
    base = issuer.rstrip("/")
    api = "https://api.github.com" if base == GITHUB_COM else base + "/api/v3"
    return base + "/login/oauth/authorize", base + "/login/oauth/access_token", api


class GitHubUpstream:
    """The :class:`~.protocol.UpstreamProvider` for GitHub OAuth apps and GitHub apps."""

    def __init__(self, settings: UpstreamSettings, redirect_uri: str, clock: Clock) -> None:
        self.settings = settings
        self.redirect_uri = redirect_uri
        self._clock = clock
        self.authorization_endpoint, self.token_endpoint, self.api = github_endpoints(settings.issuer)
        self._http = httpx2.AsyncClient(timeout=settings.timeout_seconds, follow_redirects=False)

    async def start(self) -> None:
        """Nothing is published to fetch: the endpoints are fixed."""

    async def aclose(self) -> None:
        await self._http.aclose()

    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str) -> str:
        async with oauth_client(self.settings, self.redirect_uri) as oauth:
            url, _ = oauth.create_authorization_url(
                self.authorization_endpoint,
                state=state,
                code_verifier=code_verifier,
                **authorize_params(self.settings),
            )
        return str(url)

    async def exchange_code(self, *, code: str, code_verifier: str) -> dict[str, Any]:
        return await token_endpoint.exchange_code(
            self.settings,
            self.redirect_uri,
            self.token_endpoint,
            code=code,
            code_verifier=code_verifier,
            idp="GitHub",
            headers=_JSON,
        )

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        """GitHub apps with expiring user tokens only; OAuth apps' tokens do not expire."""
        return await token_endpoint.refresh(
            self.settings, self.redirect_uri, self.token_endpoint, refresh_token, idp="GitHub", headers=_JSON
        )

    async def _get(self, path: str, access_token: str) -> Any:
        try:
            response = await self._http.get(
                self.api + path, headers={**_API_HEADERS, "Authorization": f"Bearer {access_token}"}
            )
        except httpx2.TransportError as exc:
            raise UpstreamUnavailable("GitHub's API could not be reached") from exc
        if response.status_code != 200:
            raise UpstreamError(f"GitHub's API answered HTTP {response.status_code} for {path}")
        try:
            return response.json()
        except ValueError as exc:
            raise UpstreamError(f"GitHub's API answered {path} with invalid JSON") from exc

    async def identity(self, token: Mapping[str, Any], nonce: str) -> dict[str, Any]:
        access_token = token.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise UpstreamError("GitHub's token response has no access_token")
        user = await self._get("/user", access_token)
        if not isinstance(user, dict) or not isinstance(user.get("id"), int) or isinstance(user.get("id"), bool):
            raise UpstreamError("GitHub's user API named no account id")
        claims: dict[str, Any] = {"sub": str(user["id"])}
        for ours, theirs in (
            ("preferred_username", "login"),
            ("name", "name"),
            ("picture", "avatar_url"),
            ("profile", "html_url"),
        ):
            if isinstance(user.get(theirs), str):
                claims[ours] = user[theirs]
        try:
            emails = await self._get("/user/emails", access_token)
        except UpstreamUnavailable:
            raise
        except UpstreamError:
            emails = []  # no user:email scope granted: the profile's public e-mail is not verified
        primary = (
            next(
                (e for e in emails if isinstance(e, dict) and e.get("primary") is True and e.get("verified") is True),
                None,
            )
            if isinstance(emails, list)
            else None
        )
        if primary is not None and isinstance(primary.get("email"), str):
            claims["email"] = primary["email"]
            claims["email_verified"] = True
        return claims
