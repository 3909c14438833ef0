"""The contract between the login flows and an upstream identity provider.

The flows (:mod:`..flows.login`, :mod:`..flows.callback`) and the upstream-token vault only
ever call these methods, so any IdP that can run an OAuth 2.0 authorization code flow fits,
OIDC or not. :class:`.client.UpstreamClient` implements it for OpenID Connect IdPs (every
preset but GitHub); :class:`.github.GitHubUpstream` for GitHub's plain OAuth 2.0 plus its REST
API, which is the example to copy for an IdP that fits no preset::

    provider = OIDCProvider(settings, store, upstream=MyUpstream(...))

Errors: raise :class:`~..core.errors.UpstreamUnavailable` when the IdP cannot be reached (the
user sees ``temporarily_unavailable``), :class:`~..core.errors.UpstreamError` (or a subclass)
when it answers wrongly, :class:`~..core.errors.AccessDenied` when the user may not log in.
Never put a token, code or secret in an error's description.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class UpstreamProvider(Protocol):
    """An upstream IdP, as the login flows and the token vault use it."""

    async def start(self) -> None:
        """Fetch what the IdP publishes (discovery, keys); raise if it cannot be used.

        Called once at start-up so a misconfigured server fails before a user's first login.
        """

    async def aclose(self) -> None:
        """Release HTTP connections."""

    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str) -> str:
        """The IdP's authorization URL (RFC 6749 §4.1.1) to send the browser to.

        It must carry ``state``, ``redirect_uri`` (our callback) and the S256 challenge of
        ``code_verifier`` (RFC 7636 §4.2); an OIDC IdP also gets ``nonce``.
        """

    async def exchange_code(self, *, code: str, code_verifier: str) -> dict[str, Any]:
        """Redeem the IdP's code (RFC 6749 §4.1.3); the token response as a dict (§5.1)."""

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        """A refresh-token grant (RFC 6749 §6); the token response as a dict."""

    async def identity(self, token: Mapping[str, Any], nonce: str) -> dict[str, Any]:
        """The user behind a token response from :meth:`exchange_code`, as claims.

        Must contain ``sub``: a stable, never reassigned user id at this IdP (a string). An
        OIDC IdP validates the ID token (and its ``nonce``) here; others call a user API.
        The claims mapper is applied to the result afterwards.
        """
