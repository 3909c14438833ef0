"""Running a server from the environment: shared by ``serve`` and the examples.

Reads :mod:`.env`; without ``UPSTREAM_ISSUER`` starts the embedded development IdP and says
so loudly; turns a :class:`ConfigurationError` into one line on stderr and exit status 2;
exits 0 after a SIGTERM or SIGINT once uvicorn has drained the requests in flight.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import anyio
from mcp.server.transport_security import TransportSecuritySettings

from ..core.errors import ConfigurationError
from ..core.settings import ProviderSettings
from .devidp import DEV_CLIENT_ID, DEV_CLIENT_SECRET, run_dev_idp
from .env import EnvConfig, load_env_config

logger = logging.getLogger("mcp_oidc_provider.launch")

Serve = Callable[[EnvConfig, ProviderSettings], Awaitable[None]]


def _exit_after_drain(signum: int, frame: object) -> None:
    # uvicorn drains on SIGTERM, then re-raises the signal to the previous handler: this one.
    raise SystemExit(0)


def run_from_env(serve: Serve, *, default_port: int = 8000) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _exit_after_drain)
    try:
        config = load_env_config(default_port=default_port)
        with contextlib.ExitStack() as stack:
            if config.upstream_issuer is None:
                issuer = stack.enter_context(run_dev_idp())
                logger.warning("!!! UPSTREAM_ISSUER is not set: using the embedded DEVELOPMENT IdP at %s !!!", issuer)
                settings = config.provider_settings(issuer, DEV_CLIENT_ID, DEV_CLIENT_SECRET)
            else:
                assert config.upstream_client_id is not None
                settings = config.provider_settings(
                    config.upstream_issuer, config.upstream_client_id, config.upstream_client_secret
                )
            anyio.run(serve, config, settings)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def transport_security(base_url: str, host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection that admits the public ``base_url`` host and loopback."""
    base = urlsplit(base_url)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[base.netloc, f"{host}:*", "127.0.0.1:*", "localhost:*"],
        allowed_origins=[f"{base.scheme}://{base.netloc}", "http://127.0.0.1:*", "http://localhost:*"],
    )
