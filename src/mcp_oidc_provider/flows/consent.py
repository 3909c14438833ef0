"""The consent step between /authorize and the upstream login, and the browser binding.

Why: with open dynamic registration and one upstream client, anyone can register a client
with their own redirect URI and send a victim a link; with a warm IdP session the victim's
code would land at the attacker without a click (MCP security best practices, "Confused
Deputy Problem"; RFC 9700 §4.2). So before we send the browser upstream the user sees which
client asks, where exactly it will redirect, for which MCP server and scopes, and what we ask
of the IdP, and approves or denies.

Checks, as named functions:

- :func:`bind_browser`: the first browser to open the consent step owns the login. Its binding
  cookie is a value we minted (``id.mac``, :func:`..login.verified_binding`); a planted value
  that does not verify is replaced by a fresh one. The callback accepts only that browser
  (RFC 9700 §4.7.1, login CSRF);
- :func:`ensure_csrf_token`: the form carries an HMAC of the login id and the binding id
  (double submit), so a cross-site POST cannot approve (RFC 6749 §10.12);
- :func:`remembered`: a remembered approval is a store record (:class:`ConsentApproval`) that
  the remember cookie only references; it stands for the same client, the same redirect URI,
  the same resource and scopes within the approved set, in the browser that approved;
- every way upstream writes the login's approval marker (:func:`..login.record_approval`),
  which the callback requires.

Cookies are ``__Host-`` prefixed and ``Secure`` on an https issuer (MCP security best
practices, consent cookies; RFC 6265bis §4.1.3.2: a sibling subdomain cannot set them), plain
names only on a loopback http issuer; always ``HttpOnly``, ``SameSite=Lax``, ``Path=/``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..cimd.document import clean_display_text, is_client_id_url
from ..core import audit
from ..core.errors import OIDCProviderError, UpstreamUnavailable, authorize_error_code
from ..core.redirect_policy import has_user_info
from ..core.settings import ProviderSettings
from ..crypto.derivation import mac_b64, mac_hex, matches
from ..crypto.minting import new_secret_value
from ..store.records import ConsentApproval, LoginTransaction
from . import registration
from .context import Context
from .login import (
    binding_digest,
    client_redirect,
    is_plausible_login_id,
    is_same_browser,
    mint_browser_binding,
    record_approval,
    upstream_login_url,
    verified_binding,
)

#: Cookie names on a loopback http issuer; an https issuer adds the ``__Host-`` prefix.
BINDING_COOKIE = "mcp_oidc_browser"
REMEMBER_COOKIE_PREFIX = "mcp_oidc_consent_"
HOST_PREFIX = "__Host-"
BINDING_COOKIE_MAX_AGE = 86400
#: Longest client name shown on the consent page.
MAX_DISPLAY_NAME = 100
#: A remember cookie is ``approval_id.mac``: 43 + 1 + 43 characters; anything longer is not ours.
MAX_REMEMBER_COOKIE_LENGTH = 100


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
    #: The full redirect URI (MCP security best practices, "Consent UI Requirements").
    redirect_uri: str
    scopes: tuple[str, ...]
    #: The scopes we ask of the upstream IdP on the user's behalf.
    upstream_scopes: tuple[str, ...] = ()
    #: For a CIMD client, the host of its ``client_id`` URL: what we fetched the metadata from
    #: (draft-ietf-oauth-client-id-metadata-document §8.5), unlike its self-asserted name.
    verified_domain: str | None = None
    #: Where a form submission may lead (CSP ``form-action``; Chromium checks the redirects too).
    form_targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConsentResponse:
    status: int
    location: str | None = None
    prompt: ConsentPrompt | None = None
    error: str | None = None
    error_description: str | None = None
    cookies: tuple[Cookie, ...] = field(default_factory=tuple)


def _cookie_name(settings: ProviderSettings, name: str) -> str:
    return HOST_PREFIX + name if settings.is_https else name


def binding_cookie_name(settings: ProviderSettings) -> str:
    return _cookie_name(settings, BINDING_COOKIE)


def remember_cookie_name(settings: ProviderSettings, client_id: str) -> str:
    return _cookie_name(settings, REMEMBER_COOKIE_PREFIX + hashlib.sha256(client_id.encode()).hexdigest()[:16])


def binding_max_age(settings: ProviderSettings) -> int:
    # A remembered approval names its browser's binding: the binding must live as long.
    if settings.consent == "remember":
        return max(BINDING_COOKIE_MAX_AGE, settings.consent_remember_seconds)
    return BINDING_COOKIE_MAX_AGE


def csrf_token(ctx: Context, login: str, browser: str) -> str:
    return mac_hex(ctx.keys.secret, "consent-csrf", login, browser)


def display_name(name: str | None) -> str:
    """A client's self-asserted name, without bidi overrides or control characters, capped."""
    cleaned = clean_display_text(name or "", MAX_DISPLAY_NAME)
    return cleaned or "An unnamed application"


def verified_domain(client_id: str) -> str | None:
    """The host a CIMD client's metadata came from; None for a registered client."""
    if not is_client_id_url(client_id):
        return None
    try:
        return urlsplit(client_id).hostname
    except ValueError:
        return None


# remembered approvals


def _remember_cookie_mac(ctx: Context, approval_id: str, client_id: str, browser: str) -> str:
    return mac_b64(ctx.keys.secret, "consent-remembered", approval_id, client_id, browser)


def _approval_key(ctx: Context, approval_id: str) -> str:
    return mac_hex(ctx.keys.secret, "consent-approval-key", approval_id)


def _approval_mac(
    ctx: Context, approval_id: str, browser: str, client_id: str, redirect_uri: str, resource: str,
    scopes: list[str], expires_at: float,
) -> str:  # fmt: skip
    return mac_hex(
        ctx.keys.secret,
        "consent-approval",
        approval_id,
        browser,
        client_id,
        redirect_uri,
        resource,
        " ".join(scopes),
        repr(expires_at),
    )


def covers(approval: ConsentApproval, txn: LoginTransaction) -> bool:
    """An approval stands only for what was approved: same client, redirect URI and resource,
    scopes within the approved set."""
    return (
        approval.client_id == txn.client_id
        and approval.redirect_uri == txn.redirect_uri
        and approval.resource == txn.resource
        and set(txn.scopes) <= set(approval.scopes)
    )


async def remembered(ctx: Context, txn: LoginTransaction, browser: str, cookies: Mapping[str, str]) -> bool:
    """A valid, unexpired approval by this browser of exactly this request (or a narrower one)."""
    value = cookies.get(remember_cookie_name(ctx.settings, txn.client_id))
    # A malformed or oversized cookie (a planted one, thousands of digits) counts as none.
    if not value or len(value) > MAX_REMEMBER_COOKIE_LENGTH or value.count(".") != 1:
        return False
    approval_id, mac = value.split(".")
    if not approval_id or not matches(mac, _remember_cookie_mac(ctx, approval_id, txn.client_id, browser)):
        return False
    approval = await ctx.repo.load_consent_approval(_approval_key(ctx, approval_id))
    if approval is None or approval.expires_at < ctx.now():
        return False
    expected = _approval_mac(
        ctx,
        approval_id,
        browser,
        approval.client_id,
        approval.redirect_uri,
        approval.resource,
        approval.scopes,
        approval.expires_at,
    )
    return matches(approval.mac, expected) and covers(approval, txn)


async def remember_approval(
    ctx: Context, txn: LoginTransaction, browser: str, binding_cookie: str
) -> tuple[Cookie, ...]:
    """Record what this browser approved; the cookie only references the record."""
    ttl = ctx.settings.consent_remember_seconds
    approval_id = new_secret_value()
    expires_at = float(int(ctx.now()) + ttl)
    scopes = sorted(set(txn.scopes))
    mac = _approval_mac(ctx, approval_id, browser, txn.client_id, txn.redirect_uri, txn.resource, scopes, expires_at)
    record = ConsentApproval(
        client_id=txn.client_id,
        redirect_uri=txn.redirect_uri,
        resource=txn.resource,
        scopes=scopes,
        expires_at=expires_at,
        mac=mac,
    )
    await ctx.repo.save_consent_approval(_approval_key(ctx, approval_id), record, ttl)
    value = f"{approval_id}.{_remember_cookie_mac(ctx, approval_id, txn.client_id, browser)}"
    return (
        Cookie(remember_cookie_name(ctx.settings, txn.client_id), value, ttl),
        # The binding the approval names is renewed with it, so "remember" lasts what it says.
        Cookie(binding_cookie_name(ctx.settings), binding_cookie, binding_max_age(ctx.settings)),
    )


async def needs_consent(ctx: Context, txn: LoginTransaction, browser: str, cookies: Mapping[str, str]) -> bool:
    if ctx.is_trusted_client(txn.client_id) or ctx.settings.consent == "off":
        return False
    if ctx.settings.consent == "remember":
        return not await remembered(ctx, txn, browser, cookies)
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
    ctx: Context, login: str, txn: LoginTransaction, remaining: float, cookie: str | None
) -> tuple[LoginTransaction, str, str, tuple[Cookie, ...]]:
    """The first browser to open the consent step owns the login; any other is refused.

    Returns the login, the browser's verified binding id, its cookie value and the cookies to set.
    """
    cookies: tuple[Cookie, ...] = ()
    browser = verified_binding(ctx, cookie)
    if browser is None or cookie is None:
        # Absent, or not minted by us (planted by a sibling host, say): a fresh one replaces it.
        browser, cookie = mint_browser_binding(ctx)
        cookies = (Cookie(binding_cookie_name(ctx.settings), cookie, binding_max_age(ctx.settings)),)
    digest = binding_digest(ctx, browser)
    if txn.browser_binding is None:
        txn = txn.model_copy(update={"browser_binding": digest})
        await ctx.repo.start_login(login, txn, remaining)
    elif not matches(txn.browser_binding, digest):
        audit.emit("login.other_browser", client_id=txn.client_id)
        raise ConsentRefused("This login was started in another browser; start again from your application.")
    return txn, browser, cookie, cookies


def ensure_csrf_token(ctx: Context, login: str, browser: str, token: str | None) -> None:
    if not token or not matches(token, csrf_token(ctx, login, browser)):
        audit.emit("consent.csrf_refused")
        raise ConsentRefused("This approval did not come from the consent page; start again from your application.")


def ensure_redirect_uri_displayable(txn: LoginTransaction) -> None:
    # A URI such as http://www.bank.example:443@127.0.0.1/cb would name the wrong destination;
    # registration refuses them, and one stored before that rule is never used.
    if has_user_info(txn.redirect_uri):
        raise ConsentRefused("This application's redirect URI is not allowed; its developer must register it again.")


async def _to_upstream(
    ctx: Context, login: str, txn: LoginTransaction, browser: str, cookies: tuple[Cookie, ...]
) -> ConsentResponse:
    await record_approval(ctx, login, browser, txn)
    try:
        url = await upstream_login_url(ctx, login, txn)
    except OIDCProviderError as exc:
        await ctx.repo.claim_login(login)
        await ctx.repo.delete_login_approval(login)
        error = authorize_error_code(exc) if isinstance(exc, UpstreamUnavailable) else "server_error"
        return ConsentResponse(
            302, client_redirect(ctx, txn, error=error, error_description=exc.description), cookies=cookies
        )
    return ConsentResponse(302, url, cookies=cookies)


async def _form_targets(ctx: Context, login: str, txn: LoginTransaction) -> tuple[str, ...]:
    targets = [ctx.settings.issuer_url, txn.redirect_uri]
    try:
        targets.append(await upstream_login_url(ctx, login, txn))
    except OIDCProviderError:
        pass  # approving then ends in an error redirect to the client, which is listed
    return tuple(targets)


async def open_consent(ctx: Context, login: str | None, cookies: Mapping[str, str]) -> ConsentResponse:
    """GET: show the consent page, or go straight upstream when no consent is needed."""
    try:
        txn, remaining = await load_pending_login(ctx, login)
        assert login is not None
        ensure_redirect_uri_displayable(txn)
        txn, browser, _, set_cookies = await bind_browser(
            ctx, login, txn, remaining, cookies.get(binding_cookie_name(ctx.settings))
        )
    except ConsentRefused as exc:
        return ConsentResponse(400, error="invalid_request", error_description=str(exc))
    if not await needs_consent(ctx, txn, browser, cookies):
        return await _to_upstream(ctx, login, txn, browser, set_cookies)
    client = await registration.load_client(ctx, txn.client_id)
    prompt = ConsentPrompt(
        login=login,
        csrf=csrf_token(ctx, login, browser),
        client_name=display_name(client.client_name if client else None),
        resource=txn.resource,
        redirect_uri=txn.redirect_uri,
        scopes=tuple(txn.scopes),
        upstream_scopes=tuple(ctx.settings.upstream.scopes),
        verified_domain=verified_domain(txn.client_id),
        form_targets=await _form_targets(ctx, login, txn),
    )
    return ConsentResponse(200, prompt=prompt, cookies=set_cookies)


async def decide(ctx: Context, form: Mapping[str, str], cookies: Mapping[str, str]) -> ConsentResponse:
    """POST: the user's answer. Deny: ``access_denied`` to the client. Approve: upstream."""
    login = form.get("login")
    cookie = cookies.get(binding_cookie_name(ctx.settings))
    browser = verified_binding(ctx, cookie)
    try:
        txn, _ = await load_pending_login(ctx, login)
        assert login is not None
        if browser is None or cookie is None or not is_same_browser(ctx, txn, browser):
            audit.emit("consent.csrf_refused", client_id=txn.client_id)
            raise ConsentRefused("This approval did not come from the browser that started the login.")
        ensure_csrf_token(ctx, login, browser, form.get("csrf"))
        ensure_redirect_uri_displayable(txn)
    except ConsentRefused as exc:
        return ConsentResponse(400, error="invalid_request", error_description=str(exc))
    if form.get("action") != "approve":
        if await ctx.repo.claim_login(login) is None:
            return ConsentResponse(400, error="invalid_request", error_description="This login was already used.")
        audit.emit("consent.denied", client_id=txn.client_id)
        denied = client_redirect(ctx, txn, error="access_denied", error_description="The user denied the request")
        return ConsentResponse(302, denied)
    audit.emit("consent.approved", client_id=txn.client_id)
    remember = await remember_approval(ctx, txn, browser, cookie) if ctx.settings.consent == "remember" else ()
    return await _to_upstream(ctx, login, txn, browser, remember)
