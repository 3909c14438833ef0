"""The login transaction: one upstream login in flight, from /authorize to our callback.

It is keyed by the ``state`` we send upstream (a fresh 256-bit value, RFC 6749 §10.12) and
carries the client's request, our ``nonce`` and PKCE verifier. This module owns what every
step of the login shares:

- :data:`MAX_LOGIN_ID_LENGTH`, the one rule for a login id presented by a browser;
- :func:`binding_digest` and :func:`ensure_same_browser`, the one browser-binding check
  (RFC 9700 §4.7.1, login CSRF): consent and callback accept only the browser that owns the login;
- :func:`client_redirect`, every authorization response to the client, with ``iss`` (RFC 9207 §2);
- :func:`upstream_login_url`, the IdP's authorization URL for this login.
"""

from __future__ import annotations

import logging
from typing import TypeGuard

from mcp.server.auth.provider import construct_redirect_uri

from ..core import audit
from ..core.errors import UnknownLoginTransaction, UpstreamUnavailable, safe_description
from ..crypto.derivation import mac_hex, matches
from ..store.records import LoginTransaction
from .context import Context

#: Login ids we mint are 43 characters; anything much longer is refused before a store lookup.
MAX_LOGIN_ID_LENGTH = 128


def is_plausible_login_id(login: str | None) -> TypeGuard[str]:
    return login is not None and 0 < len(login) <= MAX_LOGIN_ID_LENGTH


def binding_digest(ctx: Context, browser: str) -> str:
    """What the login stores of its browser's binding cookie: an HMAC, never the cookie."""
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
