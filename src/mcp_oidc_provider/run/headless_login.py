"""A supported headless login for development: the browser's part of a login, without a browser.

For the examples (``examples/client.py --headless``), local tries and tests against the
embedded development IdP (:mod:`.devidp`): it reads our consent page, approves or denies it,
submits the development IdP's login form and follows the redirects back to the client. It
knows nothing about a real IdP's login pages; never point it at production.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx2


def consent_form(page: str) -> tuple[str, dict[str, str]]:
    """The action URL and hidden fields of our consent page."""
    action = re.search(r'<form method="post" action="([^"]+)"', page)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    if action is None:
        raise RuntimeError("not a consent page")
    return html.unescape(action.group(1)), {k: html.unescape(v) for k, v in fields.items()}


def login_headlessly(
    authorization_url: str, redirect_uri: str, user: str = "alice", action: str = "login", consent: str = "approve"
) -> dict[str, str]:
    """Drive a browser's part of the login against the development IdP, without a browser.

    Follows the redirects from our /authorize through the consent page (answering
    ``consent``: ``approve`` or ``deny``) to the IdP's login form, submits it as ``user`` (or
    denies, with ``action="deny"``), and follows back through our callback until the redirect
    to ``redirect_uri``, whose query parameters it returns. Cookies persist as in a browser.
    """
    target = urlsplit(redirect_uri)
    with httpx2.Client(follow_redirects=False, timeout=10) as http:
        url = authorization_url
        submitted = False
        for _ in range(12):
            parts = urlsplit(url)
            if (parts.scheme, parts.netloc, parts.path) == (target.scheme, target.netloc, target.path):
                return dict(parse_qsl(parts.query))
            response = http.get(url)
            if response.status_code == 200 and parts.path.endswith("/consent"):
                form_action, fields = consent_form(response.text)
                response = http.post(form_action, data={**fields, "action": consent})
            elif response.status_code == 200 and not submitted and "/authorize" in parts.path:
                submitted = True
                form = {"sub": user} if action == "login" else {"action": "deny"}
                response = http.post(url, data=form)
            if response.status_code in (301, 302, 303, 307, 308):
                url = urljoin(url, response.headers["location"])
                continue
            raise RuntimeError(f"login stopped at HTTP {response.status_code}: {response.text[:300]}")
    raise RuntimeError("too many redirects during login")
