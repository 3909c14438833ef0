"""Our OAuth client at the upstream IdP (authlib): the only outbound HTTP of the package.

OIDC Core §3.1.2.1: we send ``state`` (our login transaction id), ``nonce`` and our own PKCE
S256 challenge (RFC 7636 §4.3, required by OAuth 2.1 whatever the IdP enforces). At the token
endpoint we authenticate with ``client_secret_basic`` unless configured otherwise (RFC 6749
§2.3.1: every authorization server supports it).

:class:`UpstreamClient` is the :class:`~.protocol.UpstreamProvider` for OpenID Connect IdPs;
presets shape its requests through :mod:`.shaping`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import anyio
import httpx2
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..core.clock import Clock
from ..core.errors import UpstreamError, UpstreamIdTokenInvalid, UpstreamUnavailable
from ..core.models import UpstreamTokens
from ..core.settings import UpstreamSettings
from . import token_endpoint
from .discovery import UpstreamMetadata, discover
from .id_token import allowed_algorithms, validate_id_token
from .shaping import accepted_issuer, authorize_params, entra_issuer_template
from .token_endpoint import oauth_client

logger = logging.getLogger("mcp_oidc_provider.upstream")

JWKS_REFETCH_COOLDOWN_SECONDS = 30.0


class UpstreamClient:
    """An OpenID Connect IdP (OIDC Core §3.1, authorization code flow); every preset but GitHub."""

    def __init__(self, settings: UpstreamSettings, redirect_uri: str, clock: Clock) -> None:
        self.settings = settings
        self.redirect_uri = redirect_uri
        self._clock = clock
        self._http = httpx2.AsyncClient(timeout=settings.timeout_seconds, follow_redirects=False)
        self._metadata: UpstreamMetadata | None = None
        self._jwks: KeySet | None = None
        self._jwks_fetched_at = 0.0
        self._lock = anyio.Lock()

    async def start(self) -> None:
        await self.metadata()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def metadata(self) -> UpstreamMetadata:
        """The discovered metadata; fetched on first use and retried until it succeeds once."""
        if self._metadata is None:
            async with self._lock:
                if self._metadata is None:
                    self._metadata = await discover(
                        self._http, self.settings.issuer, lambda published: accepted_issuer(self.settings, published)
                    )
        return self._metadata

    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str) -> str:
        metadata = await self.metadata()
        async with oauth_client(self.settings, self.redirect_uri) as oauth:
            url, _ = oauth.create_authorization_url(
                metadata.authorization_endpoint,
                state=state,
                nonce=nonce,
                code_verifier=code_verifier,
                **authorize_params(self.settings),
            )
        return str(url)

    async def exchange_code(self, *, code: str, code_verifier: str) -> dict[str, Any]:
        """RFC 6749 §4.1.3 at the upstream token endpoint."""
        metadata = await self.metadata()
        return await token_endpoint.exchange_code(
            self.settings, self.redirect_uri, metadata.token_endpoint, code=code, code_verifier=code_verifier
        )

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        metadata = await self.metadata()
        return await token_endpoint.refresh(self.settings, self.redirect_uri, metadata.token_endpoint, refresh_token)

    async def _keys(self, force: bool) -> KeySet:
        metadata = await self.metadata()
        now = time.monotonic()
        if self._jwks is not None and not force:
            return self._jwks
        if self._jwks is not None and now - self._jwks_fetched_at < JWKS_REFETCH_COOLDOWN_SECONDS:
            return self._jwks
        try:
            response = await self._http.get(metadata.jwks_uri)
            response.raise_for_status()
            self._jwks = KeySet.import_key_set(response.json())
        except httpx2.TransportError as exc:
            raise UpstreamUnavailable("The identity provider's keys could not be fetched") from exc
        except (httpx2.HTTPError, ValueError, JoseError, TypeError, KeyError, RecursionError) as exc:
            raise UpstreamError("The identity provider published invalid keys") from exc
        self._jwks_fetched_at = now
        return self._jwks

    async def validate_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """OIDC Core §3.1.3.7; an unknown signing key triggers one JWKS refetch (key rotation)."""
        metadata = await self.metadata()
        algorithms = allowed_algorithms(metadata.id_token_signing_alg_values_supported)
        for force in (False, True):
            keys = await self._keys(force)
            try:
                return validate_id_token(
                    id_token,
                    keys=keys,
                    algorithms=algorithms,
                    issuer=metadata.issuer,
                    client_id=self.settings.client_id,
                    nonce=nonce,
                    now=self._clock.now,
                    issuer_template=entra_issuer_template(self.settings),
                    allowed_tenants=self.settings.allowed_tenants,
                )
            except UpstreamIdTokenInvalid:
                if force:
                    raise
        raise AssertionError("unreachable")

    async def identity(self, token: Mapping[str, Any], nonce: str) -> dict[str, Any]:
        """The validated ID token's claims (OIDC Core §3.1.3.3: the token response carries one)."""
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise UpstreamIdTokenInvalid("The identity provider returned no ID token")
        return await self.validate_id_token(id_token, nonce)


def tokens_from_response(token: dict[str, Any], now: float) -> UpstreamTokens:
    """The IdP's token response (RFC 6749 §5.1) as we keep it; a malformed one is refused
    without its values ever reaching an error message."""

    def optional_string(name: str) -> str | None:
        value = token.get(name)
        if value is not None and not isinstance(value, str):
            raise UpstreamError(f"The identity provider's token response has an invalid {name}")
        return value

    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise UpstreamError("The identity provider's token response has no access_token")
    expires_at: float | None = None
    if isinstance(token.get("expires_at"), (int, float)):
        expires_at = float(token["expires_at"])
    elif isinstance(token.get("expires_in"), (int, float)):
        expires_at = now + float(token["expires_in"])
    return UpstreamTokens(
        access_token=access_token,
        token_type=optional_string("token_type") or "Bearer",
        id_token=optional_string("id_token"),
        refresh_token=optional_string("refresh_token"),
        expires_at=expires_at,
        scope=optional_string("scope"),
    )
