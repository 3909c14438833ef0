"""Frozen, validated configuration.

Everything the provider needs is decided here, once, at construction: a bad value raises
:class:`ConfigurationError`-style ``ValueError`` before the server accepts a request, and the
development-only options (an ``http`` upstream on loopback) are logged loudly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from .presets import PRESETS, PresetName
from .redirect_policy import (
    DEFAULT_PRIVATE_USE_SCHEMES,
    RedirectUriRefused,
    ensure_redirect_uri_allowed,
    is_loopback_host,
)

logger = logging.getLogger("mcp_oidc_provider")

#: Store URL schemes whose server can hold a rate-limit budget shared by replicas (issue 10).
SHARED_LIMIT_SCHEMES = frozenset({"redis", "rediss", "valkey", "valkeys"})


def _check_base_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{what} must be an absolute http(s) URL, got {value!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        # RFC 8414 §2 / OAuth 2.1 §1.5: the issuer is https; plain http only for loopback development.
        raise ValueError(f"{what} must use https unless it is on loopback, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{what} must not have a query or fragment (RFC 8414 §2), got {value!r}")
    return value


class UpstreamSettings(BaseModel):
    """The company IdP we federate to (OIDC Core §3.1, authorization code flow)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str
    client_id: str
    client_secret: SecretStr | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    #: RFC 6749 §2.3.1: every authorization server must support HTTP Basic for client secrets.
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post", "none"] = "client_secret_basic"
    #: Extra authorization request parameters, e.g. ``{"audience": ...}`` for Auth0 or
    #: ``{"access_type": "offline", "prompt": "consent"}`` for Google.
    extra_authorize_params: Mapping[str, str] = Field(default_factory=dict)
    timeout_seconds: float = 10.0
    # --- issue 11: presets (see core/presets.py and docs/IDPS.md) ---
    #: The IdP family: fills in its quirks (issuer, scopes, authorization parameters).
    preset: PresetName = "oidc"
    #: Auth0: the API identifier sent as ``audience`` (a JWT access token for that API).
    audience: str | None = None
    #: Entra ID: tenant ids (the ID token's ``tid``) allowed to log in; empty: any tenant.
    allowed_tenants: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in PRESETS:
            defaults = PRESETS[data["preset"]]
            if defaults.issuer is not None and not data.get("issuer"):
                data = {**data, "issuer": defaults.issuer}
            if data.get("scopes") is None:
                data = {**data, "scopes": defaults.scopes}
        return data

    @model_validator(mode="after")
    def _preset_consistent(self) -> UpstreamSettings:
        if PRESETS[self.preset].oidc and "openid" not in self.scopes:
            raise ValueError("upstream scopes must include 'openid' (OIDC Core §3.1.2.1)")
        if self.audience is not None and self.preset not in ("auth0", "oidc"):
            raise ValueError("upstream audience is an Auth0 parameter; use extra_authorize_params for others")
        if self.allowed_tenants and self.preset != "entra":
            raise ValueError("upstream allowed_tenants applies to the entra preset only")
        if self.preset == "entra" and "resource" in self.extra_authorize_params:
            # Entra v2.0 answers AADSTS9010010 to a `resource` next to scopes: never forward one.
            raise ValueError("the entra preset never sends `resource`; remove it from extra_authorize_params")
        return self

    @field_validator("issuer")
    @classmethod
    def _issuer_is_https_or_loopback(cls, value: str) -> str:
        # Kept byte for byte: OIDC Discovery §4.3 compares the discovered issuer exactly.
        return _check_base_url(value, "upstream issuer")

    @model_validator(mode="after")
    def _secret_matches_auth_method(self) -> UpstreamSettings:
        if self.token_endpoint_auth_method != "none" and self.client_secret is None:
            raise ValueError(f"upstream client_secret is required for {self.token_endpoint_auth_method}")
        return self

    @property
    def is_insecure_development(self) -> bool:
        return urlsplit(self.issuer).scheme == "http"


class StaticClient(BaseModel):
    """A client registered in configuration rather than through RFC 7591 (a first-party app).

    ``trusted`` clients skip the consent page: only mark clients you operate yourself.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str = Field(min_length=1, max_length=256)
    client_secret: SecretStr | None = None
    redirect_uris: tuple[str, ...] = Field(min_length=1)
    client_name: str | None = None
    #: Scopes it may request; default: all of the provider's.
    scopes: tuple[str, ...] | None = None
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post", "none"] | None = None
    trusted: bool = False
    #: issue 10: may call /introspect (RFC 7662 §2.1), authenticated with its secret (basic or post).
    introspection: bool = False

    @model_validator(mode="after")
    def _introspection_needs_secret(self) -> StaticClient:
        # RFC 7662 §2.1: the endpoint requires authorization; ours takes the client's secret.
        if self.introspection and self.client_secret is None:
            raise ValueError(f"static client {self.client_id!r}: introspection needs a client_secret")
        return self

    @model_validator(mode="after")
    def _auth_method_matches_secret(self) -> StaticClient:
        method = self.token_endpoint_auth_method
        if method is None:
            object.__setattr__(
                self, "token_endpoint_auth_method", "client_secret_basic" if self.client_secret else "none"
            )
        elif (method == "none") != (self.client_secret is None):
            raise ValueError(f"static client {self.client_id!r}: a secret goes with a secret-based auth method")
        return self


class ProviderSettings(BaseModel):
    """How the authorization server behaves. Lifetimes are in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Our issuer: the public base URL of the authorization server (RFC 8414 §2).
    issuer_url: str
    #: The MCP server URLs (RFC 8707 resource indicators / RFC 9728 ``resource``) tokens are for.
    #: The first one is the default audience when a client names none.
    resource_urls: tuple[str, ...] = ()
    upstream: UpstreamSettings
    scopes: tuple[str, ...] = ("mcp",)
    required_scopes: tuple[str, ...] = ("mcp",)
    callback_path: str = "/oauth/callback"
    access_token_ttl: int = Field(default=3600, ge=60, le=86400)
    refresh_token_ttl: int = Field(default=30 * 86400, ge=3600)
    #: RFC 6749 §4.1.2: a maximum authorization code lifetime of 10 minutes is RECOMMENDED.
    authorization_code_ttl: int = Field(default=60, ge=10, le=600)
    login_transaction_ttl: int = Field(default=600, ge=60, le=3600)
    #: Registrations expire after this much idle time; every use renews them.
    client_ttl: int = Field(default=90 * 86400, ge=3600)
    signing_alg: Literal["RS256", "ES256"] = "RS256"
    #: Consent before the upstream login (MCP security best practices, "confused deputy"):
    #: ``always`` asks every time; ``remember`` asks once per client per browser for
    #: ``consent_remember_seconds``; ``off`` never asks (only for trusted, pre-registered clients).
    consent: Literal["always", "remember", "off"] = "remember"
    consent_remember_seconds: int = Field(default=30 * 86400, ge=60)
    #: Client ids that never see the consent page (pre-registered first-party clients).
    trusted_client_ids: tuple[str, ...] = ()
    #: Clients registered in configuration; ``trusted`` ones never see the consent page.
    static_clients: tuple[StaticClient, ...] = ()
    #: If set, https redirect URIs must be on one of these hosts.
    allowed_redirect_hosts: tuple[str, ...] = ()
    #: A rotated-away refresh token presented again within this many seconds is refused without
    #: revoking the grant: a client's duplicate concurrent refresh, not a theft (RFC 9700 §4.14.2).
    refresh_reuse_grace_seconds: float = Field(default=2.0, ge=0, le=60)
    #: Requests per minute per client IP at /register and /authorize (0: no limit).
    rate_limit_per_minute: int = Field(default=60, ge=0)
    #: Largest request body accepted at our and the SDK's endpoints.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Take the client IP from X-Forwarded-For (only behind a proxy you control).
    trust_forwarded_for: bool = False
    #: RFC 8252 §7.1 private-use URI schemes native MCP clients register, matched whole.
    private_use_schemes: tuple[str, ...] = DEFAULT_PRIVATE_USE_SCHEMES

    # issue 9: client identity (MCP 2026-07-28 "Client Registration")
    #: Accept Client ID Metadata Documents: an https URL ``client_id`` naming the client's metadata.
    client_id_metadata_documents: bool = True
    #: RFC 7591 dynamic registration at /register (deprecated by the MCP specification of 2026-07-28).
    dynamic_registration: bool = True
    #: CIMD hosts allowed (exact or ``*.suffix``); empty: every public host.
    cimd_allowed_domains: tuple[str, ...] = ()
    #: CIMD hosts refused, whatever else says.
    cimd_denied_domains: tuple[str, ...] = ()
    #: CIMD hosts whose clients skip the consent page (only hosts you operate or fully trust).
    cimd_trusted_domains: tuple[str, ...] = ()
    #: DEVELOPMENT ONLY: fetch metadata documents from loopback addresses (tests, local clients).
    cimd_allow_loopback: bool = False
    #: A CA bundle (PEM path) to verify metadata-document hosts with instead of the system's.
    cimd_ca_bundle: str | None = None

    # issue 10: operations (shared limits, metrics, audit format)
    #: Where the /register and /authorize rate limit counts: a ``redis://``/``rediss://``/``valkey://``
    #: URL (usually the store's) shares one budget between replicas; None: per process.
    rate_limit_storage_url: str | None = None
    #: Port of the Prometheus metrics endpoint, started by the runnable servers (0: off).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    #: Audit events as JSON lines (one object per event) instead of plain log lines.
    audit_json: bool = False

    @field_validator("rate_limit_storage_url")
    @classmethod
    def _rate_limit_storage_ok(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in SHARED_LIMIT_SCHEMES | {"memory", "disk"}:
            raise ValueError("rate_limit_storage_url must be a redis, rediss, valkey, memory or disk URL")
        return value

    # --- issue 8 §1, §3 and issue 11 item 3: grant life cycle -----------------------------------
    #: Absolute lifetime of a grant from the user's login: refresh never extends it.
    grant_max_lifetime: int = Field(default=30 * 86400, ge=60)
    #: When the grant holds an upstream refresh token, our refresh grant re-checks the user's
    #: session at the IdP (by refreshing upstream) at most this often; ``invalid_grant`` there
    #: revokes the grant.
    upstream_recheck_seconds: int = Field(default=3600, ge=1)
    #: Fail-open window: while the IdP is unreachable, our refresh keeps working for this long
    #: past a due re-check; after it, our refresh is refused (``invalid_grant``, the grant is kept
    #: and the refresh token not consumed) until the IdP answers again.
    upstream_outage_grace_seconds: int = Field(default=4 * 3600, ge=0)
    #: Refreshes per minute per grant (per process); further ones are refused without consuming
    #: the refresh token. 0: no limit.
    refresh_rate_limit_per_minute: int = Field(default=30, ge=0)

    # --- issue 10 item 5: admin ------------------------------------------------------------------
    #: How often (seconds) a server re-reads the signing keys kept in the store, to see an
    #: admin's key rotation; the rotation steps wait at least this long between them.
    key_refresh_seconds: float = Field(default=10.0, ge=0.1, le=3600)
    # issue 12: the bearer check from memory, revocation still bounded.
    #: How long another process may keep serving a revoked grant from its bearer cache: each
    #: process reads the store's revocation epoch at most this often. 0: no bearer cache, the
    #: grant is read on every request. The revoking process drops the grant at once.
    revocation_propagation_seconds: float = Field(default=1.0, ge=0, le=60)
    #: Tokens (and grants) each process keeps in its bearer cache.
    bearer_cache_size: int = Field(default=10_000, ge=1)

    @property
    def tombstone_ttl(self) -> int:
        """How long a revocation is remembered: past every token of the grant (refresh tokens
        live at most ``max(refresh_token_ttl, grant_max_lifetime)``, access tokens one day)."""
        return max(self.refresh_token_ttl, self.grant_max_lifetime) + 86400 + 3600

    @field_validator("issuer_url")
    @classmethod
    def _issuer_ok(cls, value: str) -> str:
        return _check_base_url(value.rstrip("/") if urlsplit(value).path in ("", "/") else value, "issuer_url")

    @field_validator("resource_urls")
    @classmethod
    def _resources_ok(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_base_url(v, "resource URL") for v in value)

    @field_validator("callback_path")
    @classmethod
    def _path_ok(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value or "#" in value:
            raise ValueError("callback_path must be an absolute path")
        return value

    @model_validator(mode="after")
    def _defaults(self) -> ProviderSettings:
        if not self.resource_urls:
            object.__setattr__(self, "resource_urls", (self.issuer_url.rstrip("/") + "/mcp",))
        if not set(self.required_scopes) <= set(self.scopes):
            raise ValueError("required_scopes must be a subset of scopes")
        for client in self.static_clients:
            for uri in client.redirect_uris:
                try:
                    ensure_redirect_uri_allowed(uri, self.private_use_schemes, self.allowed_redirect_hosts)
                except RedirectUriRefused as exc:
                    raise ValueError(f"static client {client.client_id!r}: {exc}") from exc
            if client.scopes is not None and not set(client.scopes) <= set(self.scopes):
                raise ValueError(f"static client {client.client_id!r}: scopes must be among the provider's scopes")
        if len({c.client_id for c in self.static_clients}) != len(self.static_clients):
            raise ValueError("static client ids must be unique")
        if self.consent == "off":
            logger.warning(
                "CONSENT IS OFF: any registered client can obtain a code for a user with a live IdP session; "
                "use it only when every client is trusted"
            )
        if self.cimd_allow_loopback:
            logger.warning(
                "DEVELOPMENT ONLY: client metadata documents may be fetched from loopback addresses "
                "(cimd_allow_loopback); never do this in production"
            )
        if self.upstream.is_insecure_development:
            logger.warning(
                "DEVELOPMENT ONLY: upstream issuer %s uses plain http; never do this in production",
                self.upstream.issuer,
            )
        return self

    def static_client(self, client_id: str) -> StaticClient | None:
        return next((c for c in self.static_clients if c.client_id == client_id), None)

    def is_trusted_client(self, client_id: str) -> bool:
        static = self.static_client(client_id)
        return client_id in self.trusted_client_ids or (static is not None and static.trusted)

    @property
    def is_https(self) -> bool:
        return self.issuer_url.startswith("https://")

    @property
    def callback_url(self) -> str:
        return self.issuer_url.rstrip("/") + self.callback_path

    # --- issue 8 §4, §5: bounded resources and input hygiene ------------------------------------
    #: A registration never used at /token expires after this long (at most ``client_ttl``); a
    #: redeemed code gives it ``client_ttl`` (MCP best practices, "Bound Resource Usage").
    unused_client_ttl: int = Field(default=6 * 3600, ge=60)
    #: Registrations per minute per client IP at /register, below the /authorize budget
    #: (0: none of its own; ``rate_limit_per_minute=0`` turns every per-IP limit off).
    register_rate_limit_per_minute: int = Field(default=10, ge=0)
    #: Seconds a client gets to send a whole request body at the authorization endpoints
    #: (slowloris); past it: 408 and the connection is closed.
    body_read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
