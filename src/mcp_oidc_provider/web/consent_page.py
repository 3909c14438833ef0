"""The consent page (MCP security best practices, "Consent UI Requirements").

It names the client, the MCP server (resource) it asks for, where the browser goes afterwards
and the scopes; it is framed by nobody (``frame-ancestors 'none'``, ``X-Frame-Options: DENY``,
RFC 6749 §10.13 clickjacking) and needs no JavaScript.
"""

from __future__ import annotations

import html
from urllib.parse import urlsplit

from ..flows.consent import ConsentPrompt
from .headers import SECURITY_HEADERS

__all__ = ["SECURITY_HEADERS", "render_page"]


def redirect_destination(redirect_uri: str) -> str:
    parts = urlsplit(redirect_uri)
    if parts.scheme in ("http", "https"):
        return parts.netloc
    return f"the {parts.scheme}: application on this device"


def render_page(prompt: ConsentPrompt, consent_url: str) -> str:
    e = html.escape
    scopes = "".join(f"<li><code>{e(s)}</code></li>" for s in prompt.scopes) or "<li>(none)</li>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Allow access?</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}}
.box{{border:1px solid #ccc;border-radius:8px;padding:1.5rem}}
button{{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem}}
.warn{{color:#8a4b00}}</style></head>
<body><div class="box">
<h1>Allow <strong>{e(prompt.client_name)}</strong>?</h1>
<p>It asks to use <strong>{e(prompt.resource)}</strong> on your behalf.</p>
<p>After you sign in, you will be sent to <strong>{e(redirect_destination(prompt.redirect_uri))}</strong>.</p>
<p>Permissions requested:</p><ul>{scopes}</ul>
<p class="warn">Only continue if you started this from that application yourself.</p>
<form method="post" action="{e(consent_url)}">
<input type="hidden" name="login" value="{e(prompt.login)}">
<input type="hidden" name="csrf" value="{e(prompt.csrf)}">
<button type="submit" name="action" value="approve">Allow</button>
<button type="submit" name="action" value="deny">Deny</button>
</form></div></body></html>"""
