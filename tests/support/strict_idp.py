"""A strict upstream OIDC IdP for tests: npm ``oidc-provider`` (panva, OpenID Certified) as a real
Node process on loopback, with an admin side channel to script it.

Unlike ``oidc-provider-mock`` it enforces PKCE S256, rotates refresh tokens and revokes the whole
grant when a rotated one is reused (RFC 9700 §4.14.2), matches redirect URIs exactly and answers
RFC 9207 ``iss``. Use::

    with run_strict_idp(access_ttl=5) as idp:
        async with integrated_server(idp.issuer, client_id=idp.client_id, client_secret=idp.client_secret) as s:
            idp.allow_redirect_uri(s.base + "/oauth/callback")
            ...

Needs ``node`` (>= 20.19) and ``tests/support/strict_idp/node_modules`` (run
``tests/support/strict_idp/install.sh``); without them it fails with a one-line hint, never skips.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit

import httpx2

from support.net import free_port, wait_until_up

HERE = Path(__file__).resolve().parent / "strict_idp"
INSTALL_HINT = "strict IdP: node_modules missing; run tests/support/strict_idp/install.sh (npm ci)"


class StrictIdPError(RuntimeError):
    pass


def check_installed() -> str:
    """The ``node`` executable; raises with a one-line hint when Node or the npm packages are missing."""
    node = shutil.which("node")
    if node is None:
        raise StrictIdPError("strict IdP: `node` not on PATH; install Node.js >= 20.19")
    if not (HERE / "node_modules" / "oidc-provider" / "package.json").is_file():
        raise StrictIdPError(INSTALL_HINT)
    return node


def pkce_pair() -> tuple[str, str]:
    """A fresh RFC 7636 verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*method="post"', re.IGNORECASE)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@dataclass
class StrictIdP:
    issuer: str
    client_id: str
    client_secret: str
    admin_url: str = field(repr=False)
    log_path: Path = field(repr=False)

    # --- admin side channel -------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx2.request(method, self.admin_url + path, json=body, timeout=5)
        if response.status_code != 200:
            raise StrictIdPError(f"strict IdP admin {path}: HTTP {response.status_code} {response.text[:200]}")
        return response.json()

    def disable_user(self, sub: str) -> None:
        """From now on the IdP knows no such user: refreshing (or redeeming a code of) any of its
        grants answers ``invalid_grant``, and a new login as ``sub`` ends in an ``access_denied``
        redirect (RFC 6749 §4.1.2.1)."""
        self._admin("POST", f"users/{quote(sub, safe='')}/disable")

    def enable_user(self, sub: str) -> None:
        self._admin("POST", f"users/{quote(sub, safe='')}/enable")

    def token_calls(self, grant_type: str | None = None) -> int:
        """Requests that reached /token (also refused ones, and ones answered by an outage);
        all of them, or those of one ``grant_type``."""
        calls = self.token_log()
        return sum(1 for c in calls if grant_type is None or c["grant_type"] == grant_type)

    def token_log(self) -> list[dict[str, Any]]:
        """Each /token request in order: ``{"grant_type", "status", "error", "detail"}``; ``detail``
        is oidc-provider's own reason for an ``invalid_grant`` ("code_verifier does not match
        code_challenge", "refresh token already used", "refresh token not found", "refresh token
        invalid (referenced account not found)"); status 0 and error "outage" for a request an
        outage dropped, 503 and "outage" for one it answered."""
        return list(self._admin("GET", "token-calls")["calls"])

    def reset_token_calls(self) -> None:
        self._admin("POST", "token-calls/reset")

    def outage(self, on: bool, *, mode: str = "503", scope: str = "token") -> None:
        """Simulate the IdP being down until ``outage(False)``: ``mode`` "503" answers 503
        ``temporarily_unavailable``, "close" drops the connection; ``scope`` "token" affects only
        /token, "all" every OIDC route (discovery, JWKS, login pages too)."""
        self._admin("POST", "outage", {"mode": mode if on else "off", "scope": scope})

    def allow_redirect_uri(self, uri: str) -> None:
        """Register one more exact redirect URI for the client (our callback, once its port is known)."""
        self._admin("POST", "redirect-uris", {"uri": uri})

    def state(self) -> dict[str, Any]:
        return dict(self._admin("GET", "state"))

    # --- the browser's and the client's part, straight against the IdP ------------------------

    def authorization_url(
        self,
        redirect_uri: str,
        code_challenge: str | None,
        *,
        scope: str = "openid email profile",
        state: str = "s",
        nonce: str = "n",
        **extra: str,
    ) -> str:
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "nonce": nonce,
            **extra,
        }
        if code_challenge is not None:
            query.update(code_challenge=code_challenge, code_challenge_method="S256")
        return f"{self.issuer}/auth?{urlencode(query)}"

    def login_headlessly(self, authorization_url: str, user: str = "alice") -> str:
        """A browser at the IdP: from ``authorization_url`` (its /auth endpoint) through the
        devInteractions login form (as ``user``) and the consent form, to the redirect that leaves
        the IdP; returns that URL (our callback with ``code``, ``state`` and ``iss``, or an error
        redirect). Raises :class:`StrictIdPError` if a page other than those forms stops it (an
        IdP error page, a refused login)."""
        with httpx2.Client(follow_redirects=False, timeout=10) as browser:
            url = authorization_url
            logins = 0
            for _ in range(16):
                if not url.startswith(self.issuer + "/"):
                    return url
                response = browser.get(url)
                if response.status_code == 200 and 'name="prompt" value="login"' in response.text:
                    logins += 1
                    if logins > 1:
                        raise StrictIdPError(f"strict IdP refused the login of {user!r}")
                    response = self._submit(browser, url, response.text, {"login": user, "password": "x"})
                elif response.status_code == 200 and 'name="prompt" value="consent"' in response.text:
                    response = self._submit(browser, url, response.text, {})
                if response.status_code not in (302, 303):
                    raise StrictIdPError(
                        f"strict IdP login stopped at HTTP {response.status_code}: {_text(response.text)}"
                    )
                url = urljoin(url, response.headers["location"])
        raise StrictIdPError("strict IdP login: too many redirects")

    @staticmethod
    def _submit(browser: httpx2.Client, url: str, page: str, fields: dict[str, str]) -> httpx2.Response:
        action = _FORM.search(page)
        if action is None:
            raise StrictIdPError("strict IdP: no form on the interaction page")
        hidden = {k: html.unescape(v) for k, v in _HIDDEN.findall(page)}
        return browser.post(urljoin(url, html.unescape(action.group(1))), data={**hidden, **fields})

    def token(self, **form: str) -> httpx2.Response:
        """POST /token as the client (client_secret_basic, RFC 6749 §2.3.1)."""
        return httpx2.post(self.issuer + "/token", data=form, auth=(self.client_id, self.client_secret), timeout=10)

    def code_flow(
        self, redirect_uri: str, user: str = "alice", scope: str = "openid email profile", **extra: str
    ) -> dict[str, Any]:
        """A complete login and code redemption straight at the IdP; the token response.
        ``redirect_uri`` must be allowed (:meth:`allow_redirect_uri`); ``extra`` goes into the
        authorization request (``prompt="consent"``, ...)."""
        verifier, challenge = pkce_pair()
        url = self.authorization_url(redirect_uri, challenge, scope=scope, **extra)
        location = self.login_headlessly(url, user)
        query = dict(parse_qsl(urlsplit(location).query))
        if "code" not in query:
            raise StrictIdPError(f"strict IdP login returned no code: {query.get('error')}")
        response = self.token(
            grant_type="authorization_code", code=query["code"], code_verifier=verifier, redirect_uri=redirect_uri
        )
        if response.status_code != 200:
            raise StrictIdPError(f"strict IdP refused the code: {response.status_code} {response.text[:200]}")
        return dict(response.json())


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)).strip()[:300]


@contextlib.contextmanager
def run_strict_idp(
    *,
    client_id: str = "mcp-oidc-provider-strict",
    client_secret: str | None = None,
    redirect_uris: Sequence[str] = (),
    access_ttl: int = 3600,
    refresh_ttl: int = 86400,
    refresh_policy: str = "always",
    log_path: Path | None = None,
) -> Iterator[StrictIdP]:
    """Start the strict IdP on a free loopback port; stop it when the block ends.

    ``access_ttl``: upstream access-token lifetime in seconds (below our 30 s refresh margin every
    ``get_upstream_tokens()`` refreshes). ``refresh_policy``: "always" issues a refresh token with
    every code of this client; "offline_access" only when that scope was granted (which
    oidc-provider grants only with ``prompt=consent``, OIDC Core §11).
    """
    node = check_installed()
    port = free_port()
    client_secret = client_secret or secrets.token_urlsafe(24)
    admin_secret = secrets.token_urlsafe(18)
    argv = [
        node,
        str(HERE / "server.js"),
        "--port",
        str(port),
        "--client-id",
        client_id,
        "--access-ttl",
        str(access_ttl),
        "--refresh-ttl",
        str(refresh_ttl),
        "--refresh-policy",
        refresh_policy,
    ]
    for uri in redirect_uris:
        argv += ["--redirect-uri", uri]
    # The secrets go by environment, not argv: argv is world-readable in /proc.
    env = {**os.environ, "CLIENT_SECRET": client_secret, "ADMIN_SECRET": admin_secret}
    issuer = f"http://127.0.0.1:{port}"
    own_log = log_path is None
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="strict-idp-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            wait_until_up(issuer + "/.well-known/openid-configuration", process, timeout=15)
        except (TimeoutError, RuntimeError) as exc:
            raise StrictIdPError(f"strict IdP did not start: {exc}\n{log_path.read_text()[-2000:]}") from exc
        yield StrictIdP(
            issuer=issuer,
            client_id=client_id,
            client_secret=client_secret,
            admin_url=f"{issuer}/__admin/{admin_secret}/",
            log_path=log_path,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if own_log:
            log_path.unlink(missing_ok=True)
