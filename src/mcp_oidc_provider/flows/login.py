"""The login transaction: one upstream login in flight, from /authorize to our callback.

It is keyed by the ``state`` we send upstream (a fresh 256-bit value, RFC 6749 §10.12) and
carries the client's request, our ``nonce`` and PKCE verifier. This module owns what every
step of the login shares:

- :data:`MAX_LOGIN_ID_LENGTH`, the one rule for a login id presented by a browser;
- :func:`mint_browser_binding` and :func:`verified_binding`: the browser binding is a value the
  server minted (``id.mac``), never a string the browser chose; a cookie that does not verify
  counts as no cookie;
- :func:`binding_digest` and :func:`ensure_same_browser`, the one browser-binding check
  (RFC 9700 §4.7.1, login CSRF): consent and callback accept only the browser that owns the login;
- :func:`record_approval` and :func:`ensure_approved`: the approval marker the callback requires,
  a MAC under a server-only label over the login id, the browser binding and the request, so
  neither a store writer without the secret nor a store reader can finish an unapproved login;
- :func:`client_redirect`, every authorization response to the client, with ``iss`` (RFC 9207 §2);
- :func:`upstream_login_url`, the IdP's authorization URL for this login.
"""

from __future__ import annotations

import logging
from typing import TypeGuard

from mcp.server.auth.provider import construct_redirect_uri

from ..core import audit
from ..core.errors import UnknownLoginTransaction, UpstreamUnavailable, safe_description
from ..crypto.derivation import mac_b64, mac_hex, matches
from ..crypto.minting import new_secret_value
from ..store.records import LoginApproval, LoginTransaction
from .context import Context

#: Login ids we mint are 43 characters; anything much longer is refused before a store lookup.
MAX_LOGIN_ID_LENGTH = 128


def is_plausible_login_id(login: str | None) -> TypeGuard[str]:
    return login is not None and 0 < len(login) <= MAX_LOGIN_ID_LENGTH


#: A binding id is a 43-character base64url value; a cookie longer than this is never ours.
MAX_BINDING_COOKIE_LENGTH = 100


def mint_browser_binding(ctx: Context) -> tuple[str, str]:
    """A fresh binding: its id and the cookie value ``id.mac`` that proves we minted it."""
    binding_id = new_secret_value()
    return binding_id, f"{binding_id}.{mac_b64(ctx.keys.secret, 'browser-binding-cookie', binding_id)}"


def verified_binding(ctx: Context, cookie: str | None) -> str | None:
    """The binding id of a cookie we minted, or None for anything else (planted, truncated, absent)."""
    if not cookie or len(cookie) > MAX_BINDING_COOKIE_LENGTH or cookie.count(".") != 1:
        return None
    binding_id, mac = cookie.split(".")
    if not binding_id or not matches(mac, mac_b64(ctx.keys.secret, "browser-binding-cookie", binding_id)):
        return None
    return binding_id


def binding_digest(ctx: Context, browser: str) -> str:
    """What the login stores of its browser's binding id: an HMAC, never the id or the cookie."""
    return mac_hex(ctx.keys.secret, "browser-binding", browser)


def is_same_browser(ctx: Context, txn: LoginTransaction, browser: str | None) -> bool:
    return (
        browser is not None
        and txn.browser_binding is not None
        and matches(txn.browser_binding, binding_digest(ctx, browser))
    )


def ensure_same_browser(ctx: Context, txn: LoginTransaction, browser: str | None) -> None:
    """RFC 9700 §4.7.1: the callback must come from the browser that went through consent."""
    if not is_same_browser(ctx, txn, browser):
        audit.emit("login.other_browser", logging.WARNING, client_id=txn.client_id)
        raise UnknownLoginTransaction("This login was started in another browser; start again from your application")


def client_redirect(ctx: Context, txn: LoginTransaction, **params: str | None) -> str:
    # RFC 6749 §4.1.2.1: the description's character set holds on redirects too (it may name the upstream).
    description = params.get("error_description")
    if description is not None:
        params["error_description"] = safe_description(description)
    # RFC 9207 §2: iss on every authorization response, success or error.
    return construct_redirect_uri(txn.redirect_uri, **params, state=txn.client_state, iss=ctx.issuer)


async def upstream_login_url(ctx: Context, state: str, txn: LoginTransaction) -> str:
    """The IdP's authorization URL for this login: our ``state``, ``nonce`` and PKCE challenge."""
    try:
        return await ctx.upstream.authorization_url(state=state, nonce=txn.nonce, code_verifier=txn.code_verifier)
    except UpstreamUnavailable:
        audit.emit("upstream.unreachable", client_id=txn.client_id)
        raise


def _approval_mac(ctx: Context, state: str, browser: str, txn: LoginTransaction) -> str:
    return mac_hex(
        ctx.keys.secret,
        "login-approval",
        state,
        browser,
        txn.client_id,
        txn.redirect_uri,
        str(txn.redirect_uri_provided_explicitly),
        txn.code_challenge,
        txn.client_state or "",
        " ".join(txn.scopes),
        txn.resource,
        txn.nonce,
        txn.code_verifier,
    )


async def record_approval(ctx: Context, state: str, browser: str, txn: LoginTransaction) -> None:
    """Mark this login approved by this browser, for exactly this request (issue 8 §2)."""
    record = LoginApproval(mac=_approval_mac(ctx, state, browser, txn))
    await ctx.repo.save_login_approval(state, record, ctx.settings.login_transaction_ttl)


async def is_approved(ctx: Context, state: str, browser: str | None, txn: LoginTransaction) -> bool:
    """A marker we wrote for this login, this browser and this very request.

    MCP security best practices, "Confused Deputy Problem": no code without the user's consent.
    A marker written by someone without our secret, or one for another browser, or a login whose
    request was changed in the store after approval, does not verify.
    """
    if browser is None:
        return False
    marker = await ctx.repo.load_login_approval(state)
    return marker is not None and matches(marker.mac, _approval_mac(ctx, state, browser, txn))
