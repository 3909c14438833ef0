"""Which redirect URIs a client may register (RFC 7591 §2, RFC 8252 §7, OAuth 2.1 §2.3.1).

- ``https`` URIs with a host;
- ``http`` only on a loopback host (RFC 8252 §7.3, §8.3);
- private-use schemes from an allow-list, matched on the whole scheme (RFC 8252 §7.1),
  never by string prefix;
- never a fragment (RFC 6749 §3.1.2), never ``javascript:``, ``data:``, ``file:`` and the like.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from .settings import is_loopback_host

DEFAULT_PRIVATE_USE_SCHEMES = ("cursor", "vscode", "vscode-insiders", "windsurf", "claude", "zed")


class RedirectUriRefused(ValueError):
    pass


def ensure_redirect_uri_allowed(uri: str, private_use_schemes: Iterable[str]) -> None:
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise RedirectUriRefused("redirect URI is not a valid URI") from exc
    if parts.fragment or "#" in uri:
        raise RedirectUriRefused("redirect URIs must not contain a fragment (RFC 6749 §3.1.2)")
    scheme = parts.scheme.lower()
    if scheme == "https":
        if not parts.hostname:
            raise RedirectUriRefused("https redirect URIs need a host")
        return
    if scheme == "http":
        if not is_loopback_host(parts.hostname):
            raise RedirectUriRefused("http redirect URIs are allowed only on loopback (RFC 8252 §7.3)")
        return
    if scheme in {s.lower() for s in private_use_schemes}:
        return
    raise RedirectUriRefused(f"redirect URI scheme {scheme!r} is not allowed")
