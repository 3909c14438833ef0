"""The consent step between /authorize and the upstream login, and the browser binding.

Why: with open dynamic registration and one upstream client, anyone can register a client
with their own redirect URI and send a victim a link; with a warm IdP session the victim's
code would land at the attacker without a click (MCP security best practices, "Confused
Deputy Problem"; RFC 9700 §4.2). So before we send the browser upstream the user sees which
client asks, where it will redirect and what for, and approves or denies.

Checks, as named functions:

- :func:`bind_browser`: the first browser to open the consent step owns the login; its
  ``HttpOnly`` binding cookie is required at the upstream callback, so a callback URL
  replayed in another browser fails (RFC 9700 §4.7.1, login CSRF);
- :func:`ensure_csrf_token`: the form carries an HMAC of the login id and the binding cookie
  (double submit), so a cross-site POST cannot approve (RFC 6749 §10.12);
- :func:`remembered`: a signed per-client approval cookie, when consent mode is ``remember``.

The page is framed by nobody (``frame-ancestors 'none'``, ``X-Frame-Options: DENY``,
RFC 6749 §10.13 clickjacking) and needs no JavaScript.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..core import audit
from ..core.errors import OIDCProviderError, UpstreamUnavailable, authorize_error_code
from ..crypto.derivation import mac_hex, matches
from ..crypto.minting import new_secret_value
from ..store.records import LoginTransaction
from . import registration
from .context import Context
from .login import binding_digest, client_redirect, is_plausible_login_id, is_same_browser, upstream_login_url

BINDING_COOKIE = "mcp_oidc_browser"
REMEMBER_COOKIE_PREFIX = "mcp_oidc_consent_"
BINDING_COOKIE_MAX_AGE = 86400


@dataclass(frozen=True)
class Cookie:
    name: str
    value: str
    max_age: int


@dataclass(frozen=True)
class ConsentPrompt:
    """What the consent page shows (rendered by :mod:`..web.consent_page`)."""

    login: str
    csrf: str
    client_name: str
    resource: str
    redirect_uri: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class ConsentResponse:
    status: int
    location: str | None = None
    prompt: ConsentPrompt | None = None
    error: str | None = None
    error_description: str | None = None
    cookies: tuple[Cookie, ...] = field(default_factory=tuple)


def csrf_token(ctx: Context, login: str, browser: str) -> str:
    return mac_hex(ctx.keys.secret, "consent-csrf", login, browser)


def _remember_cookie_name(client_id: str) -> str:
    return REMEMBER_COOKIE_PREFIX + hashlib.sha256(client_id.encode()).hexdigest()[:16]


def remembered(ctx: Context, client_id: str, browser: str | None, cookies: Mapping[str, str]) -> bool:
    """A valid, unexpired approval of this client by this browser."""
    value = cookies.get(_remember_cookie_name(client_id))
    if not value or browser is None or "." not in value:
        return False
    expires, mac = value.split(".", 1)
    if not (expires.isascii() and expires.isdigit()) or int(expires) < ctx.now():
        return False
    return matches(mac, mac_hex(ctx.keys.secret, "consent-remembered", client_id, expires, browser))


def remember_cookie(ctx: Context, client_id: str, browser: str) -> Cookie:
    expires = str(int(ctx.now()) + ctx.settings.consent_remember_seconds)
    value = f"{expires}.{mac_hex(ctx.keys.secret, 'consent-remembered', client_id, expires, browser)}"
    return Cookie(_remember_cookie_name(client_id), value, ctx.settings.consent_remember_seconds)


def needs_consent(ctx: Context, txn: LoginTransaction, browser: str | None, cookies: Mapping[str, str]) -> bool:
    if ctx.settings.is_trusted_client(txn.client_id) or ctx.settings.consent == "off":
        return False
    if ctx.settings.consent == "remember":
        return not remembered(ctx, txn.client_id, browser, cookies)
    return True


class ConsentRefused(Exception):
    """The consent step cannot go on; the message is for the user's eyes."""


async def load_pending_login(ctx: Context, login: str | None) -> tuple[LoginTransaction, float]:
    if not is_plausible_login_id(login):
        raise ConsentRefused("This login request is missing or malformed; start again from your application.")
    found = await ctx.repo.load_login(login)
    if found is None:
        raise ConsentRefused("This login has expired or was already used; start again from your application.")
    txn, remaining = found
    return txn, remaining if remaining is not None else ctx.settings.login_transaction_ttl


async def bind_browser(
    ctx: Context, login: str, txn: LoginTransaction, remaining: float, browser: str | None
) -> tuple[LoginTransaction, str, tuple[Cookie, ...]]:
    """The first browser to open the consent step owns the login; any other is refused."""
    cookies: tuple[Cookie, ...] = ()
    if browser is None or len(browser) > 128:
        browser = new_secret_value()
        cookies = (Cookie(BINDING_COOKIE, browser, BINDING_COOKIE_MAX_AGE),)
    digest = binding_digest(ctx, browser)
    if txn.browser_binding is None:
        txn = txn.model_copy(update={"browser_binding": digest})
        await ctx.repo.start_login(login, txn, remaining)
    elif not matches(txn.browser_binding, digest):
        audit.emit("login.other_browser", client_id=txn.client_id)
        raise ConsentRefused("This login was started in another browser; start again from your application.")
    return txn, browser, cookies


def ensure_csrf_token(ctx: Context, login: str, browser: str, token: str | None) -> None:
    if not token or not matches(token, csrf_token(ctx, login, browser)):
        audit.emit("consent.csrf_refused")
        raise ConsentRefused("This approval did not come from the consent page; start again from your application.")


async def _to_upstream(ctx: Context, login: str, txn: LoginTransaction, cookies: tuple[Cookie, ...]) -> ConsentResponse:
    try:
        url = await upstream_login_url(ctx, login, txn)
    except OIDCProviderError as exc:
        await ctx.repo.claim_login(login)
        error = authorize_error_code(exc) if isinstance(exc, UpstreamUnavailable) else "server_error"
        return ConsentResponse(
            302, client_redirect(ctx, txn, error=error, error_description=exc.description), cookies=cookies
        )
    return ConsentResponse(302, url, cookies=cookies)


async def open_consent(ctx: Context, login: str | None, cookies: Mapping[str, str]) -> ConsentResponse:
    """GET: show the consent page, or go straight upstream when no consent is needed."""
    try:
        txn, remaining = await load_pending_login(ctx, login)
        assert login is not None
        txn, browser, set_cookies = await bind_browser(ctx, login, txn, remaining, cookies.get(BINDING_COOKIE))
    except ConsentRefused as exc:
        return ConsentResponse(400, error="invalid_request", error_description=str(exc))
    if not needs_consent(ctx, txn, browser, cookies):
        return await _to_upstream(ctx, login, txn, set_cookies)
    client = await registration.load_client(ctx, txn.client_id)
    client_name = (client.client_name if client else None) or "An unnamed application"
    prompt = ConsentPrompt(
        login=login,
        csrf=csrf_token(ctx, login, browser),
        client_name=client_name,
        resource=txn.resource,
        redirect_uri=txn.redirect_uri,
        scopes=tuple(txn.scopes),
    )
    return ConsentResponse(200, prompt=prompt, cookies=set_cookies)


async def decide(ctx: Context, form: Mapping[str, str], cookies: Mapping[str, str]) -> ConsentResponse:
    """POST: the user's answer. Deny: ``access_denied`` to the client. Approve: upstream."""
    login = form.get("login")
    browser = cookies.get(BINDING_COOKIE)
    try:
        txn, _ = await load_pending_login(ctx, login)
        assert login is not None
        if browser is None or not is_same_browser(ctx, txn, browser):
            audit.emit("consent.csrf_refused", client_id=txn.client_id)
            raise ConsentRefused("This approval did not come from the browser that started the login.")
        ensure_csrf_token(ctx, login, browser, form.get("csrf"))
    except ConsentRefused as exc:
        return ConsentResponse(400, error="invalid_request", error_description=str(exc))
    if form.get("action") != "approve":
        if await ctx.repo.claim_login(login) is None:
            return ConsentResponse(400, error="invalid_request", error_description="This login was already used.")
        audit.emit("consent.denied", client_id=txn.client_id)
        denied = client_redirect(ctx, txn, error="access_denied", error_description="The user denied the request")
        return ConsentResponse(302, denied)
    audit.emit("consent.approved", client_id=txn.client_id)
    remember = (remember_cookie(ctx, txn.client_id, browser),) if ctx.settings.consent == "remember" else ()
    return await _to_upstream(ctx, login, txn, remember)
