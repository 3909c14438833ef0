"""The configuration's names and values, without processes: every model field is a variable,
values parse the same from the environment and the file, and errors name the variable."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
from pydantic import Field

from mcp_oidc_provider import ConfigurationError, ProviderSettings, UpstreamSettings
from mcp_oidc_provider.run import env as env_module
from mcp_oidc_provider.run.env import load_env_config, provider_variables, secret_key_bytes

pytestmark = pytest.mark.unit

UPSTREAM = {"UPSTREAM_ISSUER": "https://idp.example", "UPSTREAM_CLIENT_ID": "mcp", "UPSTREAM_CLIENT_SECRET": "s"}


def settings_from(environ: dict[str, str], config_file: Path | None = None) -> ProviderSettings:
    config = load_env_config({**UPSTREAM, **environ}, config_file=config_file)
    assert config.upstream_client_id is not None and config.upstream_issuer is not None
    return config.provider_settings(config.upstream_issuer, config.upstream_client_id, config.upstream_client_secret)


def test_every_settings_field_is_a_variable_named_after_it() -> None:
    names = {v.name for v in provider_variables()}
    provider_fields = set(ProviderSettings.model_fields) - {"issuer_url", "upstream", "trust_forwarded_for"}
    assert {f.upper() for f in provider_fields} <= names
    upstream_fields = set(UpstreamSettings.model_fields) - {"token_endpoint_auth_method"}
    assert {"UPSTREAM_" + f.upper() for f in upstream_fields} <= names
    assert {"HOST", "PORT", "BASE_URL", "STORE_URL", "JWKS", "SECRET_KEY", "ENCRYPTION_KEYS"} <= names
    assert {"UPSTREAM_AUTH_METHOD", "FORWARDED_ALLOW_IPS", "RESOURCE_URLS"} <= names
    assert len(names) == len(provider_variables())


def test_a_field_added_to_provider_settings_later_is_configurable_and_checked_without_other_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Extended(ProviderSettings):
        #: A setting another change appends.
        grant_max_lifetime: int = Field(default=30 * 86400, ge=3600)

    monkeypatch.setattr(env_module, "ProviderSettings", Extended)
    assert "GRANT_MAX_LIFETIME" in {v.name for v in provider_variables()}
    config = load_env_config({**UPSTREAM, "GRANT_MAX_LIFETIME": "7200"})
    settings = config.provider_settings("https://idp.example", "mcp", "s")
    assert isinstance(settings, Extended) and settings.grant_max_lifetime == 7200
    with pytest.raises(ConfigurationError, match=r"^GRANT_MAX_LIFETIME=60 \(environment\): input should be greater"):
        load_env_config({**UPSTREAM, "GRANT_MAX_LIFETIME": "60"})


def test_lists_are_comma_or_space_separated_or_json_and_mappings_and_static_clients_are_json() -> None:
    settings = settings_from(
        {
            "UPSTREAM_SCOPES": "openid, email  offline_access",
            "ALLOWED_REDIRECT_HOSTS": '["app.example", "other.example"]',
            "TRUSTED_CLIENT_IDS": "first-party",
            "UPSTREAM_EXTRA_AUTHORIZE_PARAMS": '{"audience": "https://api.example"}',
            "STATIC_CLIENTS": '[{"client_id": "cli", "redirect_uris": ["http://127.0.0.1/cb"], "trusted": true}]',
            "CONSENT": "always",
            "REFRESH_REUSE_GRACE_SECONDS": "0.5",
        }
    )
    assert settings.upstream.scopes == ("openid", "email", "offline_access")
    assert settings.allowed_redirect_hosts == ("app.example", "other.example")
    assert settings.is_trusted_client("first-party") and settings.is_trusted_client("cli")
    assert dict(settings.upstream.extra_authorize_params) == {"audience": "https://api.example"}
    assert settings.consent == "always" and settings.refresh_reuse_grace_seconds == 0.5


def test_the_environment_overrides_the_file_and_the_file_overrides_the_defaults(tmp_path: Path) -> None:
    file = tmp_path / "mcp-oidc.toml"
    file.write_text(
        'consent = "always"\nRATE_LIMIT_PER_MINUTE = 5\nupstream_scopes = ["openid", "profile"]\n'
        'UPSTREAM_EXTRA_AUTHORIZE_PARAMS = { audience = "x" }\n'
    )
    settings = settings_from({"RATE_LIMIT_PER_MINUTE": "9"}, file)
    assert settings.consent == "always" and settings.rate_limit_per_minute == 9
    assert settings.upstream.scopes == ("openid", "profile")
    assert dict(settings.upstream.extra_authorize_params) == {"audience": "x"}


def test_a_bad_value_in_the_file_is_named_with_the_file(tmp_path: Path) -> None:
    file = tmp_path / "mcp-oidc.toml"
    file.write_text("ACCESS_TOKEN_TTL = 5\n")
    with pytest.raises(ConfigurationError, match=r"^ACCESS_TOKEN_TTL=5 \(in mcp-oidc.toml\): input should be"):
        settings_from({}, file)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"UPSTREAM_SCOPES": "email"}, "UPSTREAM_SCOPES must include 'openid'"),
        ({"REQUIRED_SCOPES": "admin"}, "REQUIRED_SCOPES must be a subset of scopes"),
        ({"UPSTREAM_EXTRA_AUTHORIZE_PARAMS": "audience=x"}, "UPSTREAM_EXTRA_AUTHORIZE_PARAMS (environment) is not"),
        ({"STATIC_CLIENTS": '[{"client_id": "a", "redirect_uris": ["javascript:x"]}]'}, "STATIC_CLIENTS: client 'a'"),
        ({"FORWARDED_ALLOW_IPS": "proxy.internal"}, "FORWARDED_ALLOW_IPS=proxy.internal (environment): "),
        ({"UPSTREAM_AUTH_METHOD": "client_secret_post", "UPSTREAM_CLIENT_SECRET": ""}, "UPSTREAM_AUTH_METHOD=none"),
        ({"UPSTREAM_CLIENT_ID": ""}, "UPSTREAM_ISSUER needs UPSTREAM_CLIENT_ID"),
    ],
)
def test_errors_name_the_variable_and_the_fix(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        settings_from(environ)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_thousand_keys_from_a_random_generator_are_all_accepted() -> None:
    for _ in range(1000):
        key = secrets.token_bytes(32)
        assert secret_key_bytes(base64.urlsafe_b64encode(key).decode().rstrip("=")) == key


@pytest.mark.parametrize("raw", [b"\x00" * 32, b"0123456789" * 4, b"correct horse battery staple!!!!"])
def test_patterned_keys_are_refused_as_too_weak(raw: bytes) -> None:
    with pytest.raises(ValueError, match="too weak"):
        secret_key_bytes(base64.urlsafe_b64encode(raw).decode())
