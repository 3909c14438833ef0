"""The consent page (MCP security best practices, "Consent UI Requirements").

It names the client (its self-asserted name, and for a CIMD client the verified domain its
metadata came from), the MCP server (resource) it asks for, the full redirect URI the browser
goes to afterwards, our scopes and the scopes we ask of the IdP. It is framed by nobody
(``frame-ancestors 'none'``, ``X-Frame-Options: DENY``, RFC 6749 §10.13 clickjacking), its form
posts only where the login may lead (``form-action``), and it needs no JavaScript.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..flows.consent import ConsentPrompt
from .headers import BASE_CSP, SECURITY_HEADERS

__all__ = ["SECURITY_HEADERS", "consent_headers", "render_page"]

# CSP3 §2.3.1 host-source / scheme-source; anything else is left out rather than escaped.
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_HOST = re.compile(r"^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)$")


def csp_source(url: str) -> str | None:
    """The CSP source expression naming where ``url`` leads: its origin, or ``scheme:``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not _SCHEME.match(scheme):
        return None
    if scheme not in ("http", "https"):
        return f"{scheme}:"
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if not _HOST.match(host):
        return None
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def form_action(targets: Iterable[str]) -> str:
    """``form-action``: Chromium also checks each redirect after the submission, so the page lists
    the upstream IdP (approve) and the client's redirect URI (deny, errors) beside itself."""
    sources = ["'self'"]
    for target in targets:
        source = csp_source(target)
        if source is not None and source not in sources:
            sources.append(source)
    return "form-action " + " ".join(sources)


def consent_headers(prompt: ConsentPrompt) -> dict[str, str]:
    return {**SECURITY_HEADERS, "Content-Security-Policy": f"{BASE_CSP}; {form_action(prompt.form_targets)}"}


def redirect_destination(redirect_uri: str) -> str:
    parts = urlsplit(redirect_uri)
    if parts.scheme in ("http", "https"):
        return parts.netloc
    return f"the {parts.scheme}: application on this device"


def _list(values: Iterable[str]) -> str:
    return "".join(f"<li><code>{html.escape(v)}</code></li>" for v in values) or "<li>(none)</li>"


def render_page(prompt: ConsentPrompt, consent_url: str) -> str:
    e = html.escape
    if prompt.verified_domain:
        identity = (
            f"<p>Verified domain: <strong>{e(prompt.verified_domain)}</strong> "
            "(where this application's details were published; its name above is its own claim).</p>"
        )
    else:
        identity = "<p>The name above is the application's own claim; it has not been verified.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Allow access?</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#222}}
.box{{border:1px solid #ccc;border-radius:8px;padding:1.5rem}}
code{{overflow-wrap:anywhere}}
button{{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem}}
.warn{{color:#8a4b00}}</style></head>
<body><div class="box">
<h1>Allow <strong>{e(prompt.client_name)}</strong>?</h1>
{identity}
<p>It asks to use <strong>{e(prompt.resource)}</strong> on your behalf.</p>
<p>After you sign in, you will be sent to <strong>{e(redirect_destination(prompt.redirect_uri))}</strong>,
at this address:</p>
<p><code id="redirect-uri">{e(prompt.redirect_uri)}</code></p>
<p>Permissions requested:</p><ul>{_list(prompt.scopes)}</ul>
<p>Your identity provider will be asked for:</p><ul>{_list(prompt.upstream_scopes)}</ul>
<p class="warn">Only continue if you started this from that application yourself.</p>
<form method="post" action="{e(consent_url)}">
<input type="hidden" name="login" value="{e(prompt.login)}">
<input type="hidden" name="csrf" value="{e(prompt.csrf)}">
<button type="submit" name="action" value="approve">Allow</button>
<button type="submit" name="action" value="deny">Deny</button>
</form></div></body></html>"""
