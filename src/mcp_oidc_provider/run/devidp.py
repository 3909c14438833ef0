"""An embedded development IdP: PyPI ``oidc-provider-mock``, in a thread, on loopback.

For examples and tests only: it accepts any user name at its login form, ignores PKCE and
signs with a throw-away key. Never use it in production; :func:`start_dev_idp` says so in the
log every time it starts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from ..core.errors import ConfigurationError

logger = logging.getLogger("mcp_oidc_provider.devidp")

DEV_CLIENT_ID = "mcp-oidc-provider-dev"
DEV_CLIENT_SECRET = "dev-secret-not-for-production"


@dataclass(frozen=True)
class DevUser:
    sub: str
    email: str
    name: str


DEFAULT_USERS = (DevUser(sub="alice", email="alice@example.test", name="Alice Example"),)


@contextmanager
def run_dev_idp(users: Sequence[DevUser] = DEFAULT_USERS, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run the development IdP until the block ends; yields its issuer URL."""
    try:
        import oidc_provider_mock  # type: ignore[import-untyped]
        import werkzeug.serving
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "UPSTREAM_ISSUER is not set and the development IdP needs the 'oidc-provider-mock' package "
            "(Python >= 3.12): pip install 'mcp-oidc-provider[dev-idp]', or set UPSTREAM_ISSUER"
        ) from exc
    app = oidc_provider_mock.app(
        require_nonce=True,
        user_claims=[oidc_provider_mock.User(sub=u.sub, claims={"email": u.email, "name": u.name}) for u in users],
    )
    server = werkzeug.serving.make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    issuer = f"http://{host}:{server.server_port}"
    logger.warning(
        "DEVELOPMENT IdP running at %s: anyone can log in as any user. Set UPSTREAM_ISSUER for a real IdP.", issuer
    )
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()


def consent_form(page: str) -> tuple[str, dict[str, str]]:
    """The action URL and hidden fields of our consent page."""
    import html
    import re

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
    from urllib.parse import parse_qsl, urljoin, urlsplit

    import httpx2

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
