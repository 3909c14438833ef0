"""Which redirect URIs a client may register (RFC 7591 §2, RFC 8252 §7, OAuth 2.1 §2.3.1).

- ``https`` URIs with a host;
- ``http`` only on a loopback host (RFC 8252 §7.3, §8.3), and like ``https`` without user
  information: ``http://www.bank.example:443@127.0.0.1/cb`` reads as a bank (RFC 3986 §7.6);
- private-use schemes from an allow-list, matched on the whole scheme (RFC 8252 §7.1),
  never by string prefix;
- never a fragment (RFC 6749 §3.1.2), never ``javascript:``, ``data:``, ``file:`` and the like.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

DEFAULT_PRIVATE_USE_SCHEMES = ("cursor", "vscode", "vscode-insiders", "windsurf", "claude", "zed")


def is_loopback_host(host: str | None) -> bool:
    if host is None:
        return False
    if host.strip("[]") in {"localhost", "::1"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class RedirectUriRefused(ValueError):
    pass


def has_user_info(uri: str) -> bool:
    """RFC 3986 §7.6: user information in a URI misleads whoever reads it as the host."""
    try:
        netloc = urlsplit(uri).netloc
    except ValueError:
        return True
    return "@" in netloc


def ensure_redirect_uri_allowed(
    uri: str,
    private_use_schemes: Iterable[str],
    allowed_hosts: Iterable[str] = (),
    application_type: str | None = None,
) -> None:
    """Refuse a redirect URI this server will never redirect to; see the module docstring.

    SEP-837 ``application_type``: ``web`` clients get https URIs on non-loopback hosts only;
    ``native`` clients get loopback or private-use URIs, and https (the mcp 2.x SDK defaults
    ``application_type`` to ``native``, so hosted clients that send nothing arrive as native).
    """
    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
    except ValueError as exc:
        raise RedirectUriRefused("redirect URI is not a valid URI") from exc
    if parts.fragment or "#" in uri:
        raise RedirectUriRefused("redirect URIs must not contain a fragment (RFC 6749 section 3.1.2)")
    if any(c.isspace() for c in uri) or "\\" in uri:
        raise RedirectUriRefused("redirect URIs must not contain whitespace or backslashes")
    scheme = parts.scheme.lower()
    loopback = is_loopback_host(hostname)
    if scheme == "https":
        if not hostname or parts.username is not None or parts.password is not None:
            raise RedirectUriRefused("https redirect URIs need a host and no user information")
        hosts = {h.lower() for h in allowed_hosts}
        if hosts and hostname.lower() not in hosts and not loopback:
            raise RedirectUriRefused("this redirect URI host is not on the server's allow-list")
        if application_type == "web" and loopback:
            raise RedirectUriRefused("web clients may not redirect to loopback (SEP-837)")
        return
    if scheme == "http":
        if not loopback:
            raise RedirectUriRefused("http redirect URIs are allowed only on loopback (RFC 8252 section 7.3)")
        if has_user_info(uri):
            raise RedirectUriRefused("redirect URIs must not contain user information (RFC 3986 section 7.6)")
        if application_type == "web":
            raise RedirectUriRefused("web clients must use https redirect URIs (SEP-837)")
        return
    if scheme in {s.lower() for s in private_use_schemes}:
        if application_type == "web":
            raise RedirectUriRefused("web clients must use https redirect URIs (SEP-837)")
        return
    raise RedirectUriRefused(f"redirect URI scheme {scheme!r} is not allowed")


def loopback_port_variant(registered: str, requested: str) -> bool:
    """RFC 8252 §7.3: for a loopback redirect URI the port may vary at request time.

    Everything else must match: scheme ``http``, host, path and query. Never for a
    non-loopback URI.
    """
    try:
        a, b = urlsplit(registered), urlsplit(requested)
        ports_valid = a.port is None or a.port > 0, b.port is None or b.port > 0
    except ValueError:
        return False
    return (
        all(ports_valid)
        and a.scheme == b.scheme == "http"
        and is_loopback_host(a.hostname)
        and a.hostname == b.hostname
        and a.path == b.path
        and a.query == b.query
        and not b.fragment
        and b.username is None
        and b.password is None
    )
