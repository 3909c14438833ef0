"""``mcp-oidc-provider doctor``: does the configured IdP offer what this package needs?

It reads the same configuration as ``serve`` (:mod:`.env`; ``--issuer``, ``--client-id``...
override it), fetches the IdP's discovery document and prints one row per need. With a client
id it also sends a real authorization request (without following it) to see whether the IdP
accepts our redirect URI. Exit status: 0 when all is well; 1 with one fix per problem; 2 when
the configuration itself is invalid.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal, TextIO
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx2
from pydantic import ValidationError

from ..core.clock import CLOCK_SKEW_SECONDS, SystemClock
from ..core.errors import ConfigurationError, OIDCProviderError
from ..core.presets import PRESETS
from ..core.settings import ProviderSettings, UpstreamSettings
from ..upstream.discovery import UpstreamMetadata, discovery_url
from ..upstream.github import github_endpoints
from ..upstream.id_token import ASYMMETRIC_ALGS
from ..upstream.presets import build_upstream
from ..upstream.shaping import accepted_issuer, authorize_params, request_scopes
from .env import environment_with, load_env_config

Status = Literal["ok", "warn", "FAIL", "info"]

#: Presets whose IdP supports PKCE S256 / refresh tokens without saying so in its discovery
#: document (Entra ID publishes neither ``code_challenge_methods_supported`` nor
#: ``grant_types_supported``).
_PKCE_UNADVERTISED = frozenset({"entra", "auth0"})
_REFRESH_UNADVERTISED = frozenset({"entra", "auth0"})

#: What IdPs put on the error page of a refused redirect URI (Keycloak, oidc-provider, Google,
#: Entra AADSTS50011, Okta, GitHub).
_REDIRECT_REFUSED = re.compile(
    r"redirect[_ ]?uri[^<]{0,80}?(mismatch|not match|did not match|invalid|not registered|not valid|not allowed)"
    r"|invalid parameter: redirect_uri|AADSTS50011|redirect_uri_mismatch",
    re.IGNORECASE,
)
_CLIENT_REFUSED = re.compile(r"invalid_client|unauthorized_client|client[^<]{0,40}(not found|unknown|invalid)", re.I)


@dataclass(frozen=True)
class Row:
    check: str
    status: Status
    detail: str
    fix: str | None = None


@dataclass
class Diagnosis:
    title: str
    rows: list[Row] = dataclasses.field(default_factory=list)

    def add(self, check: str, status: Status, detail: str, fix: str | None = None) -> None:
        self.rows.append(Row(check, status, detail, fix))

    @property
    def problems(self) -> list[Row]:
        return [r for r in self.rows if r.status == "FAIL"]

    def render(self, out: TextIO) -> None:
        out.write(self.title + "\n\n")
        width = max(len(r.check) for r in self.rows) + 2
        out.write(f"  {'CHECK'.ljust(width)}{'RESULT':8}DETAIL\n")
        for row in self.rows:
            out.write(f"  {row.check.ljust(width)}{row.status:8}{row.detail}\n")
        problems = self.problems
        if not problems:
            out.write("\nAll good: this IdP offers what mcp-oidc-provider needs.\n")
            return
        out.write(f"\n{len(problems)} problem{'s' if len(problems) > 1 else ''}; to fix:\n")
        for row in problems:
            out.write(f"  - {row.check}: {row.fix}\n")


def _clock_offset(response: httpx2.Response) -> float | None:
    date = response.headers.get("date")
    if not date:
        return None
    try:
        return parsedate_to_datetime(date).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def _check_clock(report: Diagnosis, response: httpx2.Response) -> None:
    offset = _clock_offset(response)
    if offset is None:
        report.add("clock offset", "info", "the IdP sent no Date header")
    elif abs(offset) > CLOCK_SKEW_SECONDS:
        report.add(
            "clock offset",
            "FAIL",
            f"{round(offset):+d} s against the IdP (tolerated: {CLOCK_SKEW_SECONDS} s)",
            "synchronise this machine's clock (NTP): ID tokens will look expired or not yet valid",
        )
    else:
        report.add("clock offset", "ok", f"{round(offset):+d} s against the IdP's Date header")


async def _check_oidc(report: Diagnosis, http: httpx2.AsyncClient, upstream: UpstreamSettings) -> bool:
    url = discovery_url(upstream.issuer)
    try:
        response = await http.get(url)
    except httpx2.HTTPError as exc:
        report.add("discovery", "FAIL", f"{url}: {type(exc).__name__}", "check UPSTREAM_ISSUER and the network path")
        return False
    try:
        if response.status_code != 200:
            raise ValueError(f"HTTP {response.status_code}")
        metadata = UpstreamMetadata.model_validate(response.json())
    except (ValueError, ValidationError) as exc:
        detail = str(exc).splitlines()[0][:80]
        report.add(
            "discovery",
            "FAIL",
            f"{url}: {detail}",
            "set UPSTREAM_ISSUER to the issuer URL whose /.well-known/openid-configuration the IdP publishes",
        )
        return False
    if not accepted_issuer(upstream, metadata.issuer):
        report.add(
            "discovery",
            "FAIL",
            f"the document names issuer {metadata.issuer}",
            f"set UPSTREAM_ISSUER={metadata.issuer} (OIDC Discovery 4.3 compares issuers exactly)",
        )
        return False
    report.add("discovery", "ok", f"issuer {metadata.issuer}")
    _check_clock(report, response)
    preset = upstream.preset

    # OIDC Discovery 3: response_types_supported is REQUIRED; RFC 8414 2: grant_types default.
    grants = metadata.grant_types_supported or ("authorization_code", "implicit")
    if "code" in (metadata.response_types_supported or ("code",)) and "authorization_code" in grants:
        report.add("authorization code", "ok", "response type code")
    else:
        report.add(
            "authorization code", "FAIL", "no code flow advertised", "enable the authorization code flow for the app"
        )

    methods = metadata.code_challenge_methods_supported
    if methods is not None and "S256" in methods:
        report.add("PKCE S256", "ok", "code_challenge_methods_supported: " + " ".join(methods))
    elif methods is None and preset in _PKCE_UNADVERTISED:
        report.add("PKCE S256", "ok", f"not advertised; {preset} supports it")
    else:
        report.add(
            "PKCE S256",
            "FAIL",
            "not advertised" if methods is None else "only " + " ".join(methods),
            "enable PKCE with S256 for the application at the IdP (OAuth 2.1 requires it; we always send it)",
        )

    scopes = request_scopes(upstream)
    params = authorize_params(upstream)
    wants_offline = "offline_access" in scopes
    if wants_offline and metadata.scopes_supported is not None and "offline_access" not in metadata.scopes_supported:
        report.add(
            "refresh tokens",
            "FAIL",
            "offline_access requested but not in scopes_supported",
            "remove offline_access from UPSTREAM_SCOPES or pick the preset of this IdP (UPSTREAM_PRESET)",
        )
    elif "refresh_token" in grants or (metadata.grant_types_supported is None and preset in _REFRESH_UNADVERTISED):
        how = "offline_access" if wants_offline else ("access_type=offline" if "access_type" in params else "")
        if how or preset in ("keycloak", "clerk", "okta") or not (metadata.scopes_supported or ()):
            report.add("refresh tokens", "ok", "refresh_token grant" + (f", asked with {how}" if how else ""))
        elif "offline_access" in (metadata.scopes_supported or ()):
            report.add(
                "refresh tokens",
                "warn",
                "offered, but offline_access is not requested: the IdP may issue none",
                "add offline_access to UPSTREAM_SCOPES",
            )
        else:
            report.add("refresh tokens", "ok", "refresh_token grant")
    else:
        report.add(
            "refresh tokens",
            "FAIL",
            "no refresh_token grant advertised",
            "enable the refresh token grant for the application (users would log in again every time the "
            "upstream access token expires)",
        )

    advertised = metadata.id_token_signing_alg_values_supported
    usable = [a for a in advertised if a in ASYMMETRIC_ALGS]
    jwks_detail, jwks_ok = await _jwks_summary(http, metadata.jwks_uri)
    if not usable:
        report.add(
            "ID token signing",
            "FAIL",
            "advertised: " + " ".join(advertised),
            "configure the application to sign ID tokens with RS256 or ES256 (HMAC and none are refused)",
        )
    elif not jwks_ok:
        report.add("ID token signing", "FAIL", jwks_detail, "the IdP's jwks_uri must serve its public signing keys")
    else:
        report.add("ID token signing", "ok", f"we accept {' '.join(usable)}; {jwks_detail}")

    if metadata.userinfo_endpoint:
        report.add("userinfo", "ok", metadata.userinfo_endpoint)
    else:
        report.add("userinfo", "info", "none (claims come from the ID token)")
    if metadata.revocation_endpoint:
        report.add("revocation", "ok", metadata.revocation_endpoint)
    else:
        report.add("revocation", "info", "none (upstream tokens expire on their own)")

    configured = upstream.token_endpoint_auth_method
    # OIDC Discovery 3: the default is client_secret_basic.
    supported = metadata.token_endpoint_auth_methods_supported or ("client_secret_basic",)
    if configured in supported:
        report.add("token endpoint auth", "ok", f"{configured} (IdP: {' '.join(supported)})")
    else:
        choices = [m for m in supported if m in ("client_secret_basic", "client_secret_post", "none")]
        report.add(
            "token endpoint auth",
            "FAIL",
            f"{configured} configured; IdP supports {' '.join(supported)}",
            f"set UPSTREAM_AUTH_METHOD to {' or '.join(choices) or 'a method the IdP supports'}",
        )
    return True


async def _jwks_summary(http: httpx2.AsyncClient, jwks_uri: str) -> tuple[str, bool]:
    try:
        response = await http.get(jwks_uri)
        keys = response.json().get("keys") if response.status_code == 200 else None
    except (httpx2.HTTPError, ValueError, AttributeError):
        return f"JWKS {jwks_uri} unreadable", False
    if not isinstance(keys, list) or not keys:
        return f"JWKS {jwks_uri} has no keys", False
    signing = [
        k for k in keys if isinstance(k, dict) and k.get("kty") in ("RSA", "EC", "OKP") and k.get("use") != "enc"
    ]
    return f"JWKS: {len(signing)} signing key{'s' if len(signing) != 1 else ''}", bool(signing)


def _check_github(report: Diagnosis, upstream: UpstreamSettings) -> None:
    authorize, _token, api = github_endpoints(upstream.issuer)
    report.add("discovery", "info", f"GitHub publishes none; {authorize}, API {api}")
    report.add("authorization code", "ok", "OAuth 2.0 web application flow")
    report.add("PKCE S256", "ok", "GitHub checks S256 challenges")
    report.add("refresh tokens", "info", "GitHub apps with expiring user tokens only; OAuth app tokens never expire")
    report.add("ID token signing", "info", "no ID token: the user comes from GET /user and /user/emails")


async def _check_redirect_uri(report: Diagnosis, http: httpx2.AsyncClient, settings: ProviderSettings) -> None:
    """Start a real authorization request and read the IdP's first answer without following it."""
    upstream = build_upstream(settings.upstream, settings.callback_url, SystemClock())
    redirect_uri = settings.callback_url
    fix_redirect = (
        f"register {redirect_uri} as a redirect URI of the application at the IdP (exactly, BASE_URL + /oauth/callback)"
    )
    try:
        url = await upstream.authorization_url(
            state=secrets.token_urlsafe(16), nonce=secrets.token_urlsafe(16), code_verifier=secrets.token_urlsafe(48)
        )
        response = await http.get(url)
    except (OIDCProviderError, httpx2.HTTPError) as exc:
        report.add("redirect URI", "FAIL", f"authorization request failed: {type(exc).__name__}", "check the IdP URL")
        return
    finally:
        await upstream.aclose()
    if settings.upstream.preset == "github":
        _check_clock(report, response)
    location = response.headers.get("location", "")
    if response.is_redirect and location:
        query = dict(parse_qsl(urlsplit(location).query))
        error = query.get("error")
        if error:
            hint = query.get("error_description", "")[:100]
            is_redirect = "redirect" in (error + hint).lower()
            report.add(
                "redirect URI",
                "FAIL",
                f"the IdP answered error={error} {hint}".strip(),
                fix_redirect if is_redirect else f"the IdP refused our authorization request ({error}): {_why(error)}",
            )
        elif location.startswith(redirect_uri):
            report.add("redirect URI", "ok", f"{redirect_uri} accepted (the IdP answered with a code)")
        else:
            report.add("redirect URI", "ok", f"{redirect_uri} accepted (the IdP asks the user to log in)")
        return
    body = response.text[:20000]
    if _REDIRECT_REFUSED.search(body):
        report.add("redirect URI", "FAIL", f"HTTP {response.status_code}: the IdP refused {redirect_uri}", fix_redirect)
    elif _CLIENT_REFUSED.search(body):
        report.add(
            "redirect URI",
            "FAIL",
            f"HTTP {response.status_code}: the IdP does not know client {settings.upstream.client_id}",
            "check UPSTREAM_CLIENT_ID (the application's client id at the IdP)",
        )
    elif response.status_code >= 400:
        report.add(
            "redirect URI",
            "FAIL",
            f"HTTP {response.status_code} from the authorization endpoint",
            "the IdP refused our authorization request; open the URL in a browser to read why",
        )
    else:
        report.add("redirect URI", "ok", f"{redirect_uri} accepted (the IdP shows its login page)")


def _why(error: str) -> str:
    return {
        "invalid_scope": "check UPSTREAM_SCOPES against the scopes the application may request",
        "unauthorized_client": "allow the authorization code grant for this application",
        "invalid_client": "check UPSTREAM_CLIENT_ID",
    }.get(error, "open the authorization URL in a browser to read why")


async def diagnose(settings: ProviderSettings, *, check_redirect: bool) -> Diagnosis:
    upstream = settings.upstream
    report = Diagnosis(
        f"IdP {upstream.issuer} (preset {upstream.preset}), client {upstream.client_id}, "
        f"redirect URI {settings.callback_url}"
    )
    async with httpx2.AsyncClient(timeout=upstream.timeout_seconds, follow_redirects=False) as http:
        if upstream.preset == "github":
            _check_github(report, upstream)
            reachable = True
        else:
            reachable = await _check_oidc(report, http, upstream)
        if reachable and check_redirect:
            await _check_redirect_uri(report, http, settings)
        elif reachable:
            report.add("redirect URI", "info", "not checked: no UPSTREAM_CLIENT_ID / --client-id")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--issuer", help="the IdP's issuer (default: UPSTREAM_ISSUER)")
    parser.add_argument("--client-id", help="our client id at the IdP (default: UPSTREAM_CLIENT_ID)")
    parser.add_argument("--client-secret", help="our client secret (default: UPSTREAM_CLIENT_SECRET)")
    parser.add_argument("--preset", choices=list(PRESETS), help="default: UPSTREAM_PRESET or oidc")
    parser.add_argument("--base-url", help="our public URL (default: BASE_URL)")


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    overrides = {
        name: value
        for name, value in (
            ("UPSTREAM_ISSUER", args.issuer),
            ("UPSTREAM_CLIENT_ID", args.client_id),
            ("UPSTREAM_CLIENT_SECRET", args.client_secret),
            ("UPSTREAM_PRESET", args.preset),
            ("BASE_URL", args.base_url),
        )
        if value
    }
    try:
        config = load_env_config(environment_with(overrides))
        if config.upstream_issuer is None:
            raise ConfigurationError("set UPSTREAM_ISSUER (or --issuer): doctor checks a real IdP")
        client_id = config.upstream_client_id
        settings = config.provider_settings(
            config.upstream_issuer, client_id or "doctor-without-client-id", config.upstream_client_secret
        )
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = anyio.run(lambda: diagnose(settings, check_redirect=client_id is not None))
    report.render(out)
    return 1 if report.problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcp-oidc-provider doctor")
    add_arguments(parser)
    return run(parser.parse_args(argv))
