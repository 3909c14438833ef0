"""The SDK's ``OAuthAuthorizationServerProvider``, federating login to an upstream OIDC IdP.

Pass it as ``auth_server_provider=`` with ``auth=provider.auth_settings()`` to ``MCPServer``
(mcp 2.x) or ``FastMCP`` (mcp 1.x), then call ``provider.install(server)`` for the routes the
SDK does not serve. Each method delegates to the module of its protocol concern.

Who checks what
===============

==========================================  ==========================  ==========================
Check                                       SDK                          this package
==========================================  ==========================  ==========================
client exists, redirect URI registered      /authorize, /token           registration policy
PKCE present and S256 (RFC 7636)            /authorize, /token           challenge format
scopes within the client's                  /authorize, refresh          default scopes
code expiry, client binding, redirect_uri   /token                       code single use, replay
client secret (constant time)               /token, /revoke              derived, never stored
resource indicator (RFC 8707)               (passed through)             allowed list, ``aud``
refresh rotation and reuse (RFC 9700)       no                           yes
upstream state, nonce, PKCE, ID token       no                           yes (callback)
bearer token                                401 + WWW-Authenticate       JWT, ``typ``/iss/aud/exp, grant
==========================================  ==========================  ==========================
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio
from key_value.aio.protocols import AsyncKeyValue
from mcp.server.auth.provider import AuthorizationParams, AuthorizeError, TokenError
from mcp.server.auth.routes import build_metadata
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from starlette.types import ASGIApp

from . import bearer
from .cimd import CimdFetcher, CimdResolver, DomainPolicy
from .core.claims import ClaimsMapper, default_claims_mapper
from .core.clock import Clock, SystemClock
from .core.errors import ConfigurationError, OIDCProviderError, to_token_error
from .core.models import FederatedAccessToken, FederatedAuthorizationCode, FederatedRefreshToken, UpstreamTokens
from .core.settings import ProviderSettings
from .crypto.sealing import Sealer
from .flows import authorize, grants, registration, revocation
from .flows.context import Context
from .store.instrumented import InstrumentedStore
from .store.repository import Repository
from .store.signing_keys import load_signing_keys, refresh_signing_keys
from .upstream.presets import build_upstream
from .upstream.protocol import UpstreamProvider
from .upstream.vault import UpstreamTokenService
from .web.introspection_route import introspection_metadata
from .web.protection import protect
from .web.routes import ProviderRoutes

logger = logging.getLogger("mcp_oidc_provider")


def _auth_settings_kwargs(resource_urls: tuple[str, ...]) -> dict[str, Any]:
    # validate_token_resource arrived during mcp 1.x; pass it only where it exists. With one
    # resource our own check (bearer.check_access_token_claims: aud equal to it, RFC 8707 §2)
    # is exact, so the SDK's re-parse of the resource URL on every request (issue 12) adds
    # nothing; with several, load_access_token accepts any of them (for /revoke and
    # /introspect) and the SDK's check keeps this MCP endpoint to resource_urls[0].
    if "validate_token_resource" not in AuthSettings.model_fields:
        return {}
    return {"validate_token_resource": len(resource_urls) > 1}


def authorization_server_metadata(sdk: dict[str, Any], settings: ProviderSettings, issuer: str) -> dict[str, Any]:
    """RFC 8414 metadata as we publish it: the SDK's, plus what it cannot know (see
    :mod:`.web.metadata_documents`)."""
    document = {**sdk, "issuer": issuer}
    methods = list(document.get("token_endpoint_auth_methods_supported") or [])
    document["token_endpoint_auth_methods_supported"] = [*methods, *(["none"] if "none" not in methods else [])]
    # RFC 9207 §3: we send iss on every authorization response.
    document["authorization_response_iss_parameter_supported"] = True
    # CIMD draft §4 / MCP 2026-07-28: clients use a metadata-document client_id only when told.
    document["client_id_metadata_document_supported"] = settings.client_id_metadata_documents
    if not settings.dynamic_registration:
        document.pop("registration_endpoint", None)
    document.update(introspection_metadata(issuer))  # RFC 8414 §2 / RFC 7662 (issue 10)
    return document


def build_cimd_resolver(settings: ProviderSettings, repo: Repository, clock: Clock) -> CimdResolver | None:
    if not settings.client_id_metadata_documents:
        return None
    return CimdResolver(
        load=repo.load_client_document,
        save=repo.save_client_document,
        fetcher=CimdFetcher(allow_loopback=settings.cimd_allow_loopback, ca_bundle=settings.cimd_ca_bundle),
        policy=DomainPolicy(
            allow=settings.cimd_allowed_domains,
            deny=settings.cimd_denied_domains,
            trusted=settings.cimd_trusted_domains,
        ),
        private_use_schemes=settings.private_use_schemes,
        allowed_redirect_hosts=settings.allowed_redirect_hosts,
        clock=clock.now,
    )


class OIDCProvider:
    """An OAuth 2.1 authorization server for MCP clients, logging users in at an OIDC IdP."""

    def __init__(
        self,
        settings: ProviderSettings,
        store: AsyncKeyValue | None = None,
        *,
        jwks: Mapping[str, Any] | None = None,
        secret_key: bytes | None = None,
        claims_mapper: ClaimsMapper | None = None,
        clock: Clock | None = None,
        encryption_keys: str | None = None,
        upstream: UpstreamProvider | None = None,
    ) -> None:
        if store is None:
            from key_value.aio.stores.memory import MemoryStore

            logger.warning("no store given: using an in-memory store; logins end when the process does")
            store = MemoryStore()
        store = InstrumentedStore(store) if settings.metrics_port else store  # issue 10: store metrics
        self._sealer = Sealer.from_text(encryption_keys) if encryption_keys else None
        self.settings = settings
        self._store = store
        self._jwks = jwks
        self._secret_key = secret_key
        self._claims_mapper = claims_mapper or default_claims_mapper
        #: An IdP that fits no preset (issue 11): any :class:`UpstreamProvider`.
        self._upstream = upstream
        self._clock = clock or SystemClock()
        self._repo = Repository(store)
        #: issue 12: tokens and grants checked before, from memory (see :mod:`.bearer`).
        self._bearer = bearer.BearerCache(
            self._repo,
            propagation_seconds=settings.revocation_propagation_seconds,
            size=settings.bearer_cache_size,
            grant_lifetime=settings.grant_max_lifetime,
        )
        self._ctx: Context | None = None
        self._keys_checked_at = 0.0
        self._lock = anyio.Lock()
        self._upstream_tokens: UpstreamTokenService | None = None
        self._installed = False
        self._protected = False
        # Strings, not AnyHttpUrl objects: mcp 2.x keeps a path-less issuer without a trailing
        # slash only when it parses the string itself (RFC 8414 §3.3 compares issuers exactly).
        self._auth = AuthSettings.model_validate(
            {
                "issuer_url": settings.issuer_url,
                "resource_server_url": settings.resource_urls[0],
                "required_scopes": list(settings.required_scopes) or None,
                "client_registration_options": ClientRegistrationOptions(
                    enabled=settings.dynamic_registration,
                    valid_scopes=list(settings.scopes),
                    default_scopes=list(settings.scopes),
                ),
                "revocation_options": RevocationOptions(enabled=True),
                **_auth_settings_kwargs(settings.resource_urls),
            }
        )
        metadata = build_metadata(
            self._auth.issuer_url,
            None,
            self._auth.client_registration_options or ClientRegistrationOptions(),
            self._auth.revocation_options or RevocationOptions(),
        )
        #: Our issuer, one spelling on both SDK majors (mcp 1.x would add a trailing slash to a
        #: path-less issuer): byte-identical in RFC 8414 and RFC 9728 metadata (rewritten by
        #: :mod:`.web.metadata_documents`), OIDC discovery, the token ``iss`` and RFC 9207 ``iss``.
        self.issuer: str = settings.issuer_url
        self._sdk_metadata = authorization_server_metadata(
            metadata.model_dump(mode="json", exclude_none=True), settings, self.issuer
        )

    # life cycle

    def auth_settings(self) -> AuthSettings:
        """The ``AuthSettings`` to pass as ``auth=`` next to this provider."""
        return self._auth

    @property
    def sdk_metadata(self) -> dict[str, Any]:
        return dict(self._sdk_metadata)

    async def _context(self) -> Context:
        if self._ctx is None:
            async with self._lock:
                if self._ctx is None:
                    keys = await load_signing_keys(self._repo, self._jwks, self._secret_key, self.settings.signing_alg)
                    if self._sealer is None and self._secret_key is None:
                        logger.warning(
                            "no ENCRYPTION_KEYS nor SECRET_KEY: the at-rest encryption key derives from a seed "
                            "kept in the same store; set ENCRYPTION_KEYS in production"
                        )
                    self._repo.sealer = self._sealer or Sealer.derived(keys.secret)
                    cimd = build_cimd_resolver(self.settings, self._repo, self._clock)
                    self._ctx = Context(
                        settings=self.settings,
                        issuer=self.issuer,
                        repo=self._repo,
                        keys=keys,
                        upstream=self._upstream
                        or build_upstream(self.settings.upstream, self.settings.callback_url, self._clock),
                        clock=self._clock,
                        claims_mapper=self._claims_mapper,
                        cimd=cimd,
                    )
                    self._keys_checked_at = self._clock.now()
        ctx = self._ctx
        if self._jwks is None and self._clock.now() - self._keys_checked_at >= self.settings.key_refresh_seconds:
            await self._refresh_keys(ctx)
        return ctx

    async def _refresh_keys(self, ctx: Context) -> None:
        """See an admin's key rotation in the store (issue 10 item 5); a store failure keeps
        the keys we have and is retried at the next interval."""
        self._keys_checked_at = self._clock.now()  # one reader per interval, not one per request
        try:
            if await refresh_signing_keys(ctx.repo, ctx.keys):
                # A retired key's tokens must not be served from the bearer cache either.
                self._bearer.forget_tokens()
                logger.info("signing keys changed in the store: now signing with %s", ctx.keys.kids[0])
        except Exception as exc:
            logger.warning("could not re-read the signing keys from the store: %s", type(exc).__name__)

    async def start(self) -> None:
        """Load or create the signing keys and discover the upstream IdP.

        Raises :class:`ConfigurationError` naming the upstream issuer if it cannot be reached,
        so a misconfigured server fails at start-up rather than at a user's first login.
        """
        ctx = await self._context()
        try:
            await ctx.upstream.start()
        except OIDCProviderError as exc:
            raise ConfigurationError(exc.description) from exc
        logger.info("authorization server %s federating to %s", self.issuer, self.settings.upstream.issuer)

    async def aclose(self) -> None:
        if self._ctx is not None:
            await self._ctx.upstream.aclose()

    def protect(self, app: ASGIApp) -> ASGIApp:
        """Wrap the ASGI app the SDK built with our HTTP-edge middlewares (:mod:`.web.protection`):
        the RFC 8707 check at /token, ``iss`` on the SDK's error redirects, 503 on a store outage,
        rate and body limits, our metadata documents. :meth:`mount` does this for you."""
        self._protected = True
        return protect(app, self.settings, self.issuer, self.sdk_metadata)

    def routes(self) -> ProviderRoutes:
        """Our endpoints, for a server that builds its own route list (the standalone server)."""
        self._installed = True
        return ProviderRoutes(
            self.context,
            callback_path=self.settings.callback_path,
            issuer=self.issuer,
            consent_url=self.settings.issuer_url.rstrip("/") + authorize.CONSENT_PATH,
            is_https=self.settings.is_https,
            sdk_metadata=self.sdk_metadata,
        )

    def install(self, server: Any) -> None:
        """Add our routes to an ``MCPServer``/``FastMCP``: consent, callback, OIDC discovery, JWKS, health."""
        for route in self.routes().routes():
            server.custom_route(route.path, methods=sorted(route.methods or {"GET"} - {"HEAD"}))(route.endpoint)

    def mount(self, server: Any, **streamable_http_app_kwargs: Any) -> ASGIApp:
        """Everything in one call: our routes on ``server``, then the SDK's app built with
        ``server.streamable_http_app(**kwargs)`` and wrapped by :meth:`protect`. Serve what it
        returns. (:meth:`start` stays optional: it only moves key loading and upstream discovery
        from the first request to start-up, so a bad configuration fails early.)"""
        self.install(server)
        return self.protect(server.streamable_http_app(**streamable_http_app_kwargs))

    def ensure_wired(self) -> None:
        """Fail loudly, not silently, when a deployment skipped a wiring step."""
        if not (self._installed and self._protected):
            logger.error(
                "OIDCProvider is not fully wired: use app = provider.mount(server, ...) (or both "
                "provider.install(server) and provider.protect(app)); refusing logins until then"
            )
            raise ConfigurationError("OIDCProvider is not fully wired: use provider.mount(server)")

    async def context(self) -> Context:
        return await self._context()

    # OAuthAuthorizationServerProvider

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        if not client_id or len(client_id) > 256:
            return None
        return await registration.load_client(await self._context(), client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        await registration.register_client(await self._context(), client_info)

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        try:
            self.ensure_wired()
        except ConfigurationError as exc:
            raise AuthorizeError(error="server_error", error_description="The server is misconfigured") from exc
        return await authorize.begin_login(await self._context(), client, params)

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> FederatedAuthorizationCode | None:
        return await grants.load_authorization_code(await self._context(), client, authorization_code)

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: FederatedAuthorizationCode
    ) -> OAuthToken:
        try:
            return await grants.exchange_authorization_code(await self._context(), client, authorization_code)
        except OIDCProviderError as exc:
            raise to_token_error(exc) from exc

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> FederatedRefreshToken | None:
        return await grants.load_refresh_token(await self._context(), client, refresh_token)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: FederatedRefreshToken, scopes: list[str]
    ) -> OAuthToken:
        try:
            return await grants.exchange_refresh_token(await self._context(), client, refresh_token, scopes)
        except OIDCProviderError as exc:
            raise to_token_error(exc) from exc

    async def load_access_token(self, token: str) -> FederatedAccessToken | None:
        try:
            ctx = await self._context()
            access = await bearer.verify_access_token(
                ctx.keys,
                ctx.repo,
                token,
                issuer=ctx.issuer,
                audiences=self.settings.resource_urls,
                now=ctx.now(),
                cache=self._bearer,
            )
        except Exception as exc:
            bearer.refuse_after_failure(exc)
            return None
        return access.bind_source(self) if access is not None else None

    async def revoke_token(self, token: FederatedAccessToken | FederatedRefreshToken) -> None:
        await revocation.revoke(await self._context(), token)

    async def exchange_identity_assertion(self, client: OAuthClientInformationFull, params: Any) -> OAuthToken:
        """SEP-990 ID-JAG (mcp 2.x): not offered; users log in through the upstream IdP."""
        raise TokenError(error="unsupported_grant_type", error_description="The JWT bearer grant is not supported")

    # upstream tokens for tools

    async def upstream_tokens_for(self, access: FederatedAccessToken) -> UpstreamTokens | None:
        ctx = await self._context()
        if self._upstream_tokens is None:  # one service per provider: it holds the refresh locks
            self._upstream_tokens = UpstreamTokenService(ctx.repo, ctx.upstream, ctx.clock)
        return await self._upstream_tokens.tokens_for(access)
