"""The ``TokenVerifier`` for MCP servers that run apart from the authorization server.

Pass it as ``token_verifier=`` with ``auth=verifier.auth_settings()`` to ``MCPServer`` or
``FastMCP``. For every request it checks (RFC 9068 §4, RFC 8725):

1. the signature, with the authorization server's public keys: read from the shared store,
   or fetched from its ``/jwks``; an unknown ``kid`` triggers one refetch, at most once per
   cool-down, so random ``kid`` values cannot make us hammer the store or the network;
2. ``typ`` is ``at+jwt`` (an ID token or any other JWT is refused, RFC 9068 §4 step 2);
3. ``iss`` is the authorization server, ``aud`` is this MCP server (RFC 8707 §2), ``exp``
   and ``nbf`` hold;
4. the grant behind the token is live in the shared store: a revoked grant (RFC 7009) or a
   grant killed by code replay or refresh-token reuse is refused on the next request.

The claim checks and the fail-closed policy are :mod:`.bearer`'s, shared with the provider; a
store outage refuses the token (and, with :class:`StoreOutageMiddleware`, answers 503).
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import anyio
import httpx2
from joserfc.jwk import ECKey, RSAKey
from key_value.aio.protocols import AsyncKeyValue
from mcp.server.auth.settings import AuthSettings
from starlette.types import ASGIApp

from . import bearer
from .core.clock import Clock, SystemClock
from .core.models import FederatedAccessToken, UpstreamTokens
from .crypto.keys import InvalidJWT, VerifiedTokenCache, key_id, public_keys_by_kid, verify_with_keys
from .crypto.minting import ACCESS_TOKEN_TYP
from .crypto.sealing import Sealer
from .store.repository import Repository
from .upstream.vault import UpstreamTokenService
from .web.metadata_documents import MetadataDocumentsMiddleware
from .web.outage import StoreOutageMiddleware

logger = logging.getLogger("mcp_oidc_provider.verifier")

KEY_REFETCH_COOLDOWN_SECONDS = 30.0


class SealingKeyUnavailable(Exception):
    """The grants in the store cannot be opened: the sealing key was not configured here."""


class OIDCTokenVerifier:
    """Verifies our access tokens in another process, against the shared store."""

    def __init__(
        self,
        *,
        issuer: str,
        resource_url: str,
        store: AsyncKeyValue,
        jwks_url: str | None = None,
        required_scopes: tuple[str, ...] = ("mcp",),
        clock: Clock | None = None,
        key_refetch_cooldown: float = KEY_REFETCH_COOLDOWN_SECONDS,
        encryption_keys: str | None = None,
        secret_key: bytes | None = None,
    ) -> None:
        """``encryption_keys`` must be the authorization server's (``ENCRYPTION_KEYS``); without
        them the key is derived from ``secret_key`` (``SECRET_KEY``), else from the seed the
        authorization server keeps in the store."""
        self._auth = AuthSettings.model_validate(
            {
                "issuer_url": issuer,
                "resource_server_url": resource_url,
                "required_scopes": list(required_scopes) or None,
                **({"validate_token_resource": True} if "validate_token_resource" in AuthSettings.model_fields else {}),
            }
        )
        self.issuer = issuer
        self.resource_url = resource_url
        self._repo = Repository(store)
        if encryption_keys:
            self._repo.sealer = Sealer.from_text(encryption_keys)
        elif secret_key is not None:
            self._repo.sealer = Sealer.derived(secret_key)
        self._jwks_url = jwks_url or issuer.rstrip("/") + "/jwks"
        self._clock = clock or SystemClock()
        self._cooldown = key_refetch_cooldown
        self._keys: dict[str, RSAKey | ECKey] = {}
        self._keys_loaded_at = float("-inf")
        self._lock = anyio.Lock()
        self._verified = VerifiedTokenCache()
        self._http: httpx2.AsyncClient | None = None
        self._upstream_tokens = UpstreamTokenService(self._repo, None, self._clock)
        self._warned_no_sealing_key = False

    def auth_settings(self) -> AuthSettings:
        """``AuthSettings(issuer_url=<auth server>, resource_server_url=<this MCP server>)``."""
        return self._auth

    def mount(self, server: Any, **streamable_http_app_kwargs: Any) -> ASGIApp:
        """The SDK's app built with ``server.streamable_http_app(**kwargs)``, wrapped so a store
        outage answers 503 (not 401) and the RFC 9728 metadata names the issuer exactly as
        configured on both SDK majors. Serve what it returns."""
        app = server.streamable_http_app(**streamable_http_app_kwargs)
        return StoreOutageMiddleware(MetadataDocumentsMiddleware(app, issuer=self.issuer))

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def _reload_keys(self) -> None:
        async with self._lock:
            if time.monotonic() - self._keys_loaded_at < self._cooldown:
                return
            self._keys_loaded_at = time.monotonic()
            found: dict[str, RSAKey | ECKey] = {}
            stored = await self._repo.load_public_keys()
            if stored is not None:
                found.update(public_keys_by_kid(stored.jwks))
            try:
                if self._http is None:
                    self._http = httpx2.AsyncClient(timeout=5, follow_redirects=False)
                response = await self._http.get(self._jwks_url)
                if response.status_code == 200:
                    found.update(public_keys_by_kid(response.json()))
            except (httpx2.HTTPError, ValueError):
                logger.warning("could not fetch %s; using the keys in the store", self._jwks_url)
            if found:
                self._keys = found

    async def _signature_checked_claims(self, token: str) -> dict[str, Any] | None:
        cached = self._verified.get(token)
        if cached is not None:
            return dict(cached)
        kid = key_id(token)
        if kid is None:
            return None
        if kid not in self._keys:
            await self._reload_keys()
        try:
            claims = verify_with_keys(token, ACCESS_TOKEN_TYP, self._keys)
        except InvalidJWT:
            return None
        self._verified.put(token, claims)
        return dict(claims)

    async def _ensure_sealer(self) -> None:
        if self._repo.sealer is None:
            material = await self._repo.load_keys()
            if material is None:
                if not self._warned_no_sealing_key:
                    self._warned_no_sealing_key = True
                    logger.error(
                        "no sealing key: give this MCP server the authorization server's ENCRYPTION_KEYS or "
                        "SECRET_KEY (environment or arguments); every token is refused until then"
                    )
                raise SealingKeyUnavailable
            self._repo.sealer = Sealer.derived(base64.urlsafe_b64decode(material.secret))

    async def verify_token(self, token: str) -> FederatedAccessToken | None:
        try:
            await self._ensure_sealer()
            claims = await self._signature_checked_claims(token)
            if claims is None:
                return None
            if not bearer.check_access_token_claims(claims, self.issuer, (self.resource_url,), self._clock.now()):
                return None
            access = await bearer.access_token_from_claims(self._repo, token, claims)
        except SealingKeyUnavailable:
            return None
        except Exception as exc:
            bearer.refuse_after_failure(exc)
            return None
        return access.bind_source(self) if access is not None else None

    async def upstream_tokens_for(self, access: FederatedAccessToken) -> UpstreamTokens | None:
        """The user's upstream IdP tokens as the authorization server stored them."""
        return await self._upstream_tokens.tokens_for(access)
