"""``mcp-oidc-provider doctor`` as a real process against real IdPs on loopback: the strict
Node IdP (complete) and fakes that lack PKCE, refresh tokens, or our redirect URI."""

from __future__ import annotations

import os
import sys

import anyio
from support.fake_idps import run_fake
from support.net import ROOT, free_port
from support.strict_idp import run_strict_idp

BASE_URL = f"http://127.0.0.1:{free_port()}"


async def doctor(*args: str, **env: str) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("UPSTREAM_", "BASE_URL"))}
    result = await anyio.run_process(
        [sys.executable, "-m", "mcp_oidc_provider.run.cli", "doctor", *args],
        env={**clean, "PYTHONPATH": str(ROOT / "src"), "BASE_URL": BASE_URL, **env},
        check=False,
    )
    return result.returncode, result.stdout.decode() + result.stderr.decode()


def rows(output: str) -> dict[str, str]:
    """CHECK -> RESULT from the table."""
    found = {}
    for line in output.splitlines():
        for status in ("ok", "warn", "FAIL", "info"):
            marker = f"  {status} "
            if line.startswith("  ") and marker in line:
                found[line[: line.index(marker)].strip()] = status
                break
    return found


async def test_doctor_is_all_green_and_exits_0_on_a_complete_idp() -> None:
    with run_strict_idp(redirect_uris=[BASE_URL + "/oauth/callback"]) as idp:
        status, output = await doctor(
            UPSTREAM_ISSUER=idp.issuer,
            UPSTREAM_CLIENT_ID=idp.client_id,
            UPSTREAM_CLIENT_SECRET=idp.client_secret,
            UPSTREAM_SCOPES="openid email profile offline_access",
        )
    assert status == 0, output
    table = rows(output)
    assert set(table.values()) == {"ok"}, output
    for check in (
        "discovery",
        "clock offset",
        "authorization code",
        "PKCE S256",
        "refresh tokens",
        "ID token signing",
        "userinfo",
        "revocation",
        "token endpoint auth",
        "redirect URI",
    ):
        assert table[check] == "ok", output


async def test_doctor_names_the_redirect_uri_to_register_when_the_idp_refuses_ours() -> None:
    with run_strict_idp(redirect_uris=["http://127.0.0.1:1/elsewhere"]) as idp:
        status, output = await doctor(
            "--issuer", idp.issuer, "--client-id", idp.client_id, "--client-secret", idp.client_secret
        )
    assert status == 1, output
    assert rows(output)["redirect URI"] == "FAIL"
    assert f"register {BASE_URL}/oauth/callback as a redirect URI" in output


async def test_doctor_fails_with_the_fix_on_an_idp_without_pkce() -> None:
    async with run_fake("oidc", discovery_overrides={"code_challenge_methods_supported": ["plain"]}) as fake:
        status, output = await doctor("--issuer", fake.issuer, "--client-id", fake.client_id)
    assert status == 1, output
    assert rows(output)["PKCE S256"] == "FAIL"
    assert "enable PKCE with S256" in output


async def test_doctor_fails_with_the_fix_on_an_idp_without_refresh_tokens() -> None:
    async with run_fake("oidc", discovery_overrides={"grant_types_supported": ["authorization_code"]}) as fake:
        status, output = await doctor(
            "--issuer", fake.issuer, "--client-id", fake.client_id, UPSTREAM_SCOPES="openid email offline_access"
        )
    assert status == 1, output
    assert rows(output)["refresh tokens"] == "FAIL"
    assert "enable the refresh token grant" in output


async def test_doctor_accepts_entra_multi_tenant_and_a_redirect_uri_the_idp_knows() -> None:
    async with run_fake(
        "entra", "/organizations/v2.0", registered_redirect_uris=(BASE_URL + "/oauth/callback",)
    ) as fake:
        status, output = await doctor(
            "--issuer", fake.issuer, "--client-id", fake.client_id, "--client-secret", "s", "--preset", "entra"
        )
    assert status == 0, output
    assert rows(output)["PKCE S256"] == "ok" and rows(output)["redirect URI"] == "ok"


async def test_doctor_reports_an_unknown_client_and_a_configuration_error_distinctly() -> None:
    async with run_fake("oidc") as fake:
        status, output = await doctor("--issuer", fake.issuer, "--client-id", "not-registered")
        bad_status, bad_output = await doctor("--issuer", fake.issuer, "--preset", "nonsense")
        config_status, config_output = await doctor(UPSTREAM_ISSUER=fake.issuer, UPSTREAM_PRESET="nonsense")
    assert status == 1 and "check UPSTREAM_CLIENT_ID" in output, output
    assert bad_status == 2 and "invalid choice" in bad_output
    assert config_status == 2 and "UPSTREAM_PRESET must be one of" in config_output
