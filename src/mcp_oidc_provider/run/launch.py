"""Running a server from the configuration: shared by ``serve`` and the examples.

Reads :mod:`.env` (the environment over an optional ``--config`` TOML file); checks that the
store answers before anything else starts; without ``UPSTREAM_ISSUER`` starts the embedded
development IdP and says so loudly; turns a :class:`ConfigurationError` into one line on stderr
and exit status 2; exits 0 after a SIGTERM or SIGINT once uvicorn has drained the requests in
flight.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import uvicorn
from key_value.aio.protocols import AsyncKeyValue
from mcp.server.transport_security import TransportSecuritySettings

from ..core.errors import ConfigurationError
from ..core.settings import ProviderSettings
from ..store.backends import DEFAULT_TIMEOUT, ensure_store_reachable, store_from_url
from ..store.repository import Repository
from .devidp import DEV_CLIENT_ID, DEV_CLIENT_SECRET, run_dev_idp
from .env import EnvConfig, Variable, load_env_config, variables_help

logger = logging.getLogger("mcp_oidc_provider.launch")

Serve = Callable[[EnvConfig, ProviderSettings, AsyncKeyValue], Awaitable[None]]


def _exit_after_drain(signum: int, frame: object) -> None:
    # uvicorn drains on SIGTERM, then re-raises the signal to the previous handler: this one.
    raise SystemExit(0)


async def open_store(url: str, within_seconds: float) -> AsyncKeyValue:
    """The store at ``url``, once it has answered a write, a read and a delete within
    ``within_seconds`` (:func:`~mcp_oidc_provider.store.backends.ensure_store_reachable`).

    Raises a one-line :class:`ConfigurationError` naming ``STORE_URL`` (password redacted): a
    refused connection fails at once, a server that accepts and never answers at the deadline.
    """
    store = store_from_url(url, timeout=min(within_seconds, DEFAULT_TIMEOUT))
    await ensure_store_reachable(store, url, within_seconds)
    return store


def uvicorn_config(app: Any, host: str, port: int, forwarded_allow_ips: Sequence[str]) -> uvicorn.Config:
    """uvicorn for our servers: proxy headers believed only from ``FORWARDED_ALLOW_IPS``.

    uvicorn then puts the real client address in the ASGI scope, which is what the rate limit
    counts by; with none trusted, X-Forwarded-For is ignored.
    """
    trusted = list(forwarded_allow_ips)
    # Everything built so far (modules, settings, the app) lives as long as the process: keep it
    # out of the garbage collector's generations, which otherwise cost every request a share.
    gc.freeze()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        proxy_headers=bool(trusted),
        # Given explicitly: uvicorn would otherwise read FORWARDED_ALLOW_IPS from the environment itself.
        forwarded_allow_ips=trusted or "127.0.0.1",
    )


def command_line(
    argv: Sequence[str] | None, prog: str, description: str, variables: Sequence[Variable], default_port: int
) -> str | None:
    """``--config FILE`` and a ``--help`` listing every variable; returns the file, if any."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=variables_help(variables, default_port),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_argument(parser)
    config: str | None = parser.parse_args(argv).config
    return config


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file with the variables below as keys (the environment wins)"
    )


def run_from_env(serve: Serve, *, default_port: int = 8000, config_file: str | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _exit_after_drain)
    try:
        config = load_env_config(default_port=default_port, config_file=config_file)
        anyio.run(_run, serve, config)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


async def _run(serve: Serve, config: EnvConfig) -> None:
    store = await open_store(config.store_url, config.store_timeout_seconds)
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
        await serve(config, settings, store)


async def check_resource_server_keys(
    store: AsyncKeyValue, auth_issuer: str, has_sealing_key: bool, http_timeout: float = 3.0
) -> list[str]:
    """What keeps a proxy-mode MCP server from accepting tokens now, one sentence each.

    Warnings, not errors: the authorization server may simply start after this one.
    """
    repo = Repository(store)
    problems = []
    jwks_url = auth_issuer.rstrip("/") + "/jwks"
    if await repo.load_public_keys() is None:
        try:
            async with httpx2.AsyncClient(timeout=http_timeout, follow_redirects=False) as http:
                response = await http.get(jwks_url)
            reachable = response.status_code == 200
        except httpx2.HTTPError:
            reachable = False
        if not reachable:
            problems.append(
                f"no signing keys: none in STORE_URL and {jwks_url} unreachable; every token is refused "
                "until the authorization server at AUTH_ISSUER runs on the same STORE_URL"
            )
    if not has_sealing_key and await repo.load_keys() is None:
        problems.append(
            "no sealing key: set ENCRYPTION_KEYS or SECRET_KEY as on the authorization server (or start it "
            "on the same STORE_URL); every token is refused until then"
        )
    return problems


def transport_security(base_url: str, host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection that admits the public ``base_url`` host and loopback."""
    base = urlsplit(base_url)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[base.netloc, f"{host}:*", "127.0.0.1:*", "localhost:*"],
        allowed_origins=[f"{base.scheme}://{base.netloc}", "http://127.0.0.1:*", "http://localhost:*"],
    )
