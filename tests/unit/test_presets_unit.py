"""Presets as configuration: defaults, refusals, the request each one shapes, Entra's tenant check."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from mcp_oidc_provider import UpstreamSettings
from mcp_oidc_provider.core.errors import AccessDenied, UpstreamIdTokenInvalid
from mcp_oidc_provider.run.env import load_env_config
from mcp_oidc_provider.upstream.github import github_endpoints
from mcp_oidc_provider.upstream.id_token import validate_id_token
from mcp_oidc_provider.upstream.shaping import accepted_issuer, authorize_params, request_scopes

pytestmark = pytest.mark.unit
ENTRA = "https://login.microsoftonline.com/organizations/v2.0"


def test_google_and_github_need_no_issuer_and_github_needs_no_openid_scope() -> None:
    google = UpstreamSettings(preset="google", client_id="c", client_secret="s")
    github = UpstreamSettings(preset="github", client_id="c", client_secret="s")
    assert google.issuer == "https://accounts.google.com"
    assert github.issuer == "https://github.com" and github.scopes == ("read:user", "user:email")


def test_an_oidc_preset_without_the_openid_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="openid"):
        UpstreamSettings(preset="okta", issuer="https://o.okta.com", client_id="c", client_secret="s", scopes=("x",))


def test_entra_refuses_a_configured_resource_parameter() -> None:
    with pytest.raises(ValueError, match="never sends `resource`"):
        UpstreamSettings(
            preset="entra", issuer=ENTRA, client_id="c", client_secret="s", extra_authorize_params={"resource": "x"}
        )


def test_allowed_tenants_and_audience_belong_to_their_presets() -> None:
    with pytest.raises(ValueError, match="entra"):
        UpstreamSettings(issuer="https://idp.example", client_id="c", client_secret="s", allowed_tenants=("t",))
    with pytest.raises(ValueError, match="Auth0"):
        UpstreamSettings(preset="google", client_id="c", client_secret="s", audience="https://api")


def test_google_and_clerk_drop_offline_access_and_configured_parameters_win() -> None:
    google = UpstreamSettings(
        preset="google",
        client_id="c",
        client_secret="s",
        scopes=("openid", "offline_access"),
        extra_authorize_params={"prompt": "select_account consent"},
    )
    clerk = UpstreamSettings(
        preset="clerk",
        issuer="https://x.clerk.accounts.dev",
        client_id="c",
        client_secret="s",
        scopes=("openid", "offline_access"),
    )
    assert request_scopes(google) == ("openid",) and request_scopes(clerk) == ("openid",)
    assert authorize_params(google) == {"access_type": "offline", "prompt": "select_account consent"}


def test_auth0_sends_its_audience() -> None:
    auth0 = UpstreamSettings(
        preset="auth0",
        issuer="https://t.auth0.com/",
        client_id="c",
        client_secret="s",
        audience="https://api.example.com",
    )
    assert authorize_params(auth0) == {"audience": "https://api.example.com"}
    assert "offline_access" in request_scopes(auth0)


def test_entra_multi_tenant_discovery_issuer_is_accepted_only_for_the_entra_preset() -> None:
    template = "https://login.microsoftonline.com/{tenantid}/v2.0"
    entra = UpstreamSettings(preset="entra", issuer=ENTRA, client_id="c", client_secret="s")
    generic = UpstreamSettings(issuer=ENTRA, client_id="c", client_secret="s")
    single = UpstreamSettings(
        preset="entra", issuer="https://login.microsoftonline.com/t1/v2.0", client_id="c", client_secret="s"
    )
    assert accepted_issuer(entra, template)
    assert not accepted_issuer(generic, template) and not accepted_issuer(single, template)


def _entra_token(key: RSAKey, tid: str, iss_tenant: str | None = None) -> str:
    now = int(time.time())
    claims = {
        "iss": f"https://login.microsoftonline.com/{iss_tenant or tid}/v2.0",
        "sub": "u",
        "aud": "c",
        "tid": tid,
        "iat": now,
        "exp": now + 600,
        "nonce": "n",
    }
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


@pytest.mark.parametrize(
    ("tid", "iss_tenant", "allowed", "outcome"),
    [
        ("tenant-a", None, ("tenant-a",), "ok"),
        ("tenant-b", None, ("tenant-a",), AccessDenied),
        ("tenant-b", "tenant-a", (), UpstreamIdTokenInvalid),  # iss must be the token's own tenant
        ("tenant-b", None, (), "ok"),
    ],
)
def test_an_entra_id_token_is_checked_against_its_own_tenant_and_the_allow_list(
    tid: str, iss_tenant: str | None, allowed: tuple[str, ...], outcome: object
) -> None:
    key = RSAKey.generate_key(2048, parameters={"alg": "RS256"}, auto_kid=True)
    token = _entra_token(key, tid, iss_tenant)

    def check() -> dict[str, object]:
        return validate_id_token(
            token,
            keys=KeySet([key]),
            algorithms=["RS256"],
            issuer="ignored",
            client_id="c",
            nonce="n",
            now=time.time,
            issuer_template="https://login.microsoftonline.com/{tenantid}/v2.0",
            allowed_tenants=allowed,
        )

    if outcome == "ok":
        assert check()["tid"] == tid
    else:
        with pytest.raises(outcome):  # type: ignore[call-overload]
            check()


def test_github_endpoints_for_github_com_and_enterprise_server() -> None:
    assert github_endpoints("https://github.com")[2] == "https://api.github.com"
    assert github_endpoints("https://ghe.example.com") == (
        "https://ghe.example.com/login/oauth/authorize",
        "https://ghe.example.com/login/oauth/access_token",
        "https://ghe.example.com/api/v3",
    )


def test_the_environment_selects_a_preset_with_its_issuer_and_scopes() -> None:
    config = load_env_config({"UPSTREAM_PRESET": "github", "UPSTREAM_CLIENT_ID": "c", "UPSTREAM_CLIENT_SECRET": "s"})
    settings = config.provider_settings(config.upstream_issuer or "", "c", "s")
    assert settings.upstream.preset == "github" and settings.upstream.issuer == "https://github.com"
    assert settings.upstream.scopes == ("read:user", "user:email")
    entra = load_env_config(
        {
            "UPSTREAM_PRESET": "entra",
            "UPSTREAM_ISSUER": ENTRA,
            "UPSTREAM_CLIENT_ID": "c",
            "UPSTREAM_ALLOWED_TENANTS": "a, b",
        }
    )
    assert entra.provider_settings(ENTRA, "c", None).upstream.allowed_tenants == ("a", "b")
