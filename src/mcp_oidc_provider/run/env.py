"""Configuration from environment variables, shared by the examples and the CLI: the only
module of the package that reads the environment.

=========================  =====================================================  ======================
Variable                   Meaning                                                Default
=========================  =====================================================  ======================
``HOST``                   interface to listen on                                 ``127.0.0.1``
``PORT``                   port to listen on                                      ``8000``
``BASE_URL``               public URL of this server (our issuer)                 ``http://HOST:PORT``
``UPSTREAM_ISSUER``        the OIDC IdP's issuer; unset: embedded dev IdP         (dev IdP)
``UPSTREAM_CLIENT_ID``     our client id at the IdP                               required with issuer
``UPSTREAM_CLIENT_SECRET`` our client secret at the IdP                           (public client)
``UPSTREAM_SCOPES``        space-separated scopes asked of the IdP                ``openid email profile``
``UPSTREAM_AUTH_METHOD``   ``client_secret_basic``/``client_secret_post``/``none``  basic (``none`` w/o secret)
``STORE_URL``              ``memory://``, ``disk://PATH``, ``redis://HOST:PORT/DB``  ``memory://``
``JWKS``                   private JWKS from ``mcp-oidc-provider keygen``         kept in the store
``SECRET_KEY``             seed for client secrets, cookies (base64url, 32+ B)    kept in the store
``ENCRYPTION_KEYS``        Fernet keys sealing upstream tokens and claims         derived from the seed
``RESOURCE_URLS``          comma-separated MCP server URLs tokens are for         ``BASE_URL/mcp``
``UPSTREAM_PRESET``        ``oidc`` ``auth0`` ``okta`` ``keycloak`` ``entra``     ``oidc``
                           ``google`` ``clerk`` ``github`` (docs/IDPS.md)
``UPSTREAM_AUDIENCE``      Auth0: the API identifier (``audience``)               (none)
``UPSTREAM_ALLOWED_TENANTS`` Entra: comma-separated tenant ids allowed to log in  (any tenant)
=========================  =====================================================  ======================
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from ..core.errors import ConfigurationError
from ..core.presets import PRESETS
from ..core.settings import ProviderSettings, UpstreamSettings
from ..crypto.keys import parse_jwks_json


@dataclass(frozen=True)
class EnvConfig:
    host: str
    port: int
    base_url: str
    store_url: str
    upstream_issuer: str | None
    upstream_client_id: str | None
    upstream_client_secret: str | None
    upstream_scopes: tuple[str, ...]
    upstream_auth_method: str
    resource_urls: tuple[str, ...]
    secret_key: bytes | None
    jwks: dict[str, Any] | None = None
    encryption_keys: str | None = None
    #: issue 11: preset, audience, allowed_tenants for UpstreamSettings.
    upstream_options: Mapping[str, Any] = field(default_factory=dict)

    def provider_settings(self, upstream_issuer: str, client_id: str, client_secret: str | None) -> ProviderSettings:
        try:
            upstream = UpstreamSettings(
                issuer=upstream_issuer,
                client_id=client_id,
                client_secret=SecretStr(client_secret) if client_secret is not None else None,
                scopes=self.upstream_scopes,
                token_endpoint_auth_method=self.upstream_auth_method,  # type: ignore[arg-type]
                **self.upstream_options,
            )
            return ProviderSettings(issuer_url=self.base_url, resource_urls=self.resource_urls, upstream=upstream)
        except ValueError as exc:
            raise ConfigurationError(f"invalid configuration: {exc}") from exc


def secret_key_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    env = os.environ if environ is None else environ
    raw = env.get("SECRET_KEY")
    if not raw:
        return None
    try:
        secret_key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except ValueError as exc:
        raise ConfigurationError("SECRET_KEY must be base64url") from exc
    if len(secret_key) < 32:
        raise ConfigurationError("SECRET_KEY must hold at least 32 bytes")
    return secret_key


def load_env_config(environ: Mapping[str, str] | None = None, *, default_port: int = 8000) -> EnvConfig:
    env = os.environ if environ is None else environ
    host = env.get("HOST", "127.0.0.1")
    try:
        port = int(env.get("PORT", str(default_port)))
    except ValueError as exc:
        raise ConfigurationError("PORT must be a number") from exc
    url_host = f"[{host}]" if ":" in host else host
    base_url = env.get("BASE_URL") or f"http://{url_host}:{port}"
    base_url = base_url.rstrip("/")
    options = upstream_options_from_env(env)
    preset = PRESETS[options.get("preset", "oidc")]
    issuer = env.get("UPSTREAM_ISSUER") or preset.issuer
    client_id = env.get("UPSTREAM_CLIENT_ID") or None
    if issuer and not client_id:
        raise ConfigurationError("UPSTREAM_CLIENT_ID is required when UPSTREAM_ISSUER is set")
    resources = tuple(u.strip() for u in env.get("RESOURCE_URLS", "").split(",") if u.strip())
    secret_key = secret_key_from_env(env)
    return EnvConfig(
        host=host,
        port=port,
        base_url=base_url,
        store_url=env.get("STORE_URL", "memory://"),
        upstream_issuer=issuer,
        upstream_client_id=client_id,
        upstream_client_secret=env.get("UPSTREAM_CLIENT_SECRET") or None,
        upstream_scopes=tuple(env.get("UPSTREAM_SCOPES", " ".join(preset.scopes)).split()),
        upstream_auth_method=env.get(
            "UPSTREAM_AUTH_METHOD", "client_secret_basic" if env.get("UPSTREAM_CLIENT_SECRET") else "none"
        ),
        resource_urls=resources or (base_url + "/mcp",),
        secret_key=secret_key,
        jwks=parse_jwks_json(env["JWKS"]) if env.get("JWKS") else None,
        encryption_keys=env.get("ENCRYPTION_KEYS") or None,
        upstream_options=options,
    )


def upstream_options_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """issue 11: ``UPSTREAM_PRESET``, ``UPSTREAM_AUDIENCE``, ``UPSTREAM_ALLOWED_TENANTS``."""
    options: dict[str, Any] = {}
    preset = env.get("UPSTREAM_PRESET") or "oidc"
    if preset not in PRESETS:
        raise ConfigurationError(f"UPSTREAM_PRESET must be one of {', '.join(PRESETS)}, got {preset!r}")
    if preset != "oidc":
        options["preset"] = preset
    if env.get("UPSTREAM_AUDIENCE"):
        options["audience"] = env["UPSTREAM_AUDIENCE"]
    tenants = tuple(t.strip() for t in env.get("UPSTREAM_ALLOWED_TENANTS", "").split(",") if t.strip())
    if tenants:
        options["allowed_tenants"] = tenants
    return options


def environment_with(overrides: Mapping[str, str]) -> dict[str, str]:
    """The process environment with some variables replaced (command-line options)."""
    return {**os.environ, **overrides}
