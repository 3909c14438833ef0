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
