"""The ``TokenVerifier`` for MCP servers that run apart from the authorization server.

Pass it as ``token_verifier=`` with ``auth=verifier.auth_settings()`` to ``MCPServer`` or
``FastMCP``. For every request it checks (RFC 9068 §4, RFC 8725):

1. the signature, with the authorization server's public keys: read from the shared store,
   and fetched from its ``/jwks``, again every ``key_refresh_seconds`` (so a retired key stops
   being trusted within that bound, with every signature verdict made with it), and at once
   for an unknown ``kid`` (so a new key works on its first token, RFC 7517 §4.5). Unknown-kid
   refetches are limited per kid (one per ``key_refetch_cooldown``) and overall (one per
   ``unknown_kid_interval``), so random ``kid`` values cannot make us hammer the store or
   the network;
2. ``typ`` is ``at+jwt`` (an ID token or any other JWT is refused, RFC 9068 §4 step 2);
3. ``iss`` is the authorization server, ``aud`` is this MCP server (RFC 8707 §2), ``exp``
   and ``nbf`` hold;
4. the grant behind the token is live in the shared store: a revoked grant (RFC 7009) or a
   grant killed by code replay or refresh-token reuse is refused within
   ``revocation_propagation_seconds`` (1 s; 0: on the next request, reading the grant on
   every request), see :class:`.bearer.BearerCache`.

The claim checks and the fail-closed policy are :mod:`.bearer`'s, shared with the provider; a
store outage refuses the token (and, with :class:`StoreOutageMiddleware`, answers 503).
"""

from __future__ import annotations

import base64
import logging
import time
from collections import OrderedDict
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
#: Re-read the public keys this often: the bound on trusting a retired key.
KEY_REFRESH_SECONDS = 60.0
#: At most one unknown-kid refetch per this many seconds, whatever the kid.
UNKNOWN_KID_INTERVAL_SECONDS = 1.0
_HAS_VALIDATE_FLAG = "validate_token_resource" in AuthSettings.model_fields


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
        revocation_propagation_seconds: float = 1.0,
        key_refresh_seconds: float = KEY_REFRESH_SECONDS,
        unknown_kid_interval: float = UNKNOWN_KID_INTERVAL_SECONDS,
        cache_size: int = bearer.DEFAULT_CACHE_SIZE,
    ) -> None:
        """``encryption_keys`` must be the authorization server's (``ENCRYPTION_KEYS``); without
        them the key is derived from ``secret_key`` (``SECRET_KEY``), else from the seed the
        authorization server keeps in the store."""
        self._auth = AuthSettings.model_validate(
            {
                "issuer_url": issuer,
                "resource_server_url": resource_url,
                "required_scopes": list(required_scopes) or None,
                # Our aud check is exact (bearer.check_access_token_claims, RFC 8707 §2): the
                # SDK's re-parse of the resource URL on every request would add nothing.
                **({"validate_token_resource": False} if _HAS_VALIDATE_FLAG else {}),
            }
        )
        self.issuer = issuer
        self.resource_url = resource_url
        self._audiences = (resource_url,)
        self._repo = Repository(store)
        if encryption_keys:
            self._repo.sealer = Sealer.from_text(encryption_keys)
        elif secret_key is not None:
            self._repo.sealer = Sealer.derived(secret_key)
        self._jwks_url = jwks_url or issuer.rstrip("/") + "/jwks"
        self._clock = clock or SystemClock()
        self._cooldown = key_refetch_cooldown
        self._key_refresh = key_refresh_seconds
        self._unknown_kid_interval = unknown_kid_interval
        self._keys: dict[str, RSAKey | ECKey] = {}
        self._keys_loaded_at = float("-inf")
        self._unknown_kid_fetched_at = float("-inf")
        #: kid -> when it last triggered a refetch (bounded).
        self._kid_tries: OrderedDict[str, float] = OrderedDict()
        self._lock = anyio.Lock()
        self._verified = VerifiedTokenCache()
        self._bearer = bearer.BearerCache(
            self._repo, propagation_seconds=revocation_propagation_seconds, size=cache_size
        )
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

    async def _refresh_keys_if_due(self) -> None:
        if time.monotonic() - self._keys_loaded_at >= self._key_refresh:
            await self._reload_keys(None)

    def _may_refetch_for(self, kid: str) -> bool:
        now = time.monotonic()
        if now - self._unknown_kid_fetched_at < self._unknown_kid_interval:
            return False
        tried = self._kid_tries.get(kid)
        return tried is None or now - tried >= self._cooldown

    async def _reload_keys(self, unknown_kid: str | None) -> None:
        """Re-read the keys: when due (``unknown_kid`` None) or for an unknown kid."""
        async with self._lock:
            now = time.monotonic()
            if unknown_kid is None:
                if now - self._keys_loaded_at < self._key_refresh:
                    return  # a concurrent request just did it
            else:
                if unknown_kid in self._keys or not self._may_refetch_for(unknown_kid):
                    return
                self._unknown_kid_fetched_at = now
                self._kid_tries[unknown_kid] = now
                self._kid_tries.move_to_end(unknown_kid)
                if len(self._kid_tries) > 1024:
                    self._kid_tries.popitem(last=False)
            self._keys_loaded_at = now
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
                if self._keys.keys() - found.keys():
                    # A key was retired: every verdict made with it goes (RFC 7517 §4.5 kid).
                    self._verified.clear()
                    self._bearer.forget_tokens()
                self._keys = found

    async def _signature_checked_claims(self, token: str) -> dict[str, Any] | None:
        cached = self._verified.get(token)
        if cached is not None:
            return dict(cached)
        kid = key_id(token)
        if kid is None:
            return None
        if kid not in self._keys:
            await self._reload_keys(kid)
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
            await self._refresh_keys_if_due()
            now = self._clock.now()
            cache = self._bearer
            if cache.enabled:
                await cache.ready()
                access = cache.hit(token, now)
                if access is None:
                    claims = await self._signature_checked_claims(token)
                    if claims is None:
                        return None
                    access = await cache.admit(token, claims, issuer=self.issuer, audiences=self._audiences, now=now)
            else:
                claims = await self._signature_checked_claims(token)
                if claims is None:
                    return None
                if not bearer.check_access_token_claims(claims, self.issuer, self._audiences, now):
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
