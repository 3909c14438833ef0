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
import logging
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2
import uvicorn
from key_value.aio.protocols import AsyncKeyValue
from mcp.server.transport_security import TransportSecuritySettings

from ..core.errors import ConfigurationError
from ..core.settings import ProviderSettings
from ..store.backends import store_from_url
from ..store.repository import Repository
from .devidp import DEV_CLIENT_ID, DEV_CLIENT_SECRET, run_dev_idp
from .env import EnvConfig, Variable, load_env_config, variables_help

logger = logging.getLogger("mcp_oidc_provider.launch")

Serve = Callable[[EnvConfig, ProviderSettings, AsyncKeyValue], Awaitable[None]]

_PROBE_COLLECTION = "mcp-oidc-startup-probe"
_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "valkey": 6379, "valkeys": 6379, "postgresql": 5432, "postgres": 5432}


def _exit_after_drain(signum: int, frame: object) -> None:
    # uvicorn drains on SIGTERM, then re-raises the signal to the previous handler: this one.
    raise SystemExit(0)


def redacted(url: str) -> str:
    """The store URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


async def open_store(url: str, within_seconds: float) -> AsyncKeyValue:
    """The store at ``url``, once it has answered a write, a read and a delete within ``within_seconds``.

    Raises a one-line :class:`ConfigurationError` naming ``STORE_URL`` (password redacted): a
    refused connection fails at once, a server that accepts and never answers at the deadline.
    """
    shown = redacted(url)
    key = secrets.token_hex(8)
    parts = urlsplit(url)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    try:
        store = store_from_url(url)
        with anyio.fail_after(within_seconds):
            if parts.hostname and port:
                # A refused connection is known at once; store clients retry it with back-off.
                await (await anyio.connect_tcp(parts.hostname, port)).aclose()
            await store.put(key=key, value={"probe": True}, collection=_PROBE_COLLECTION, ttl=60)
            if await store.get(key=key, collection=_PROBE_COLLECTION) is None:
                raise ConfigurationError(f"STORE_URL={shown}: the store lost a value just written; check the store")
            await store.delete(key=key, collection=_PROBE_COLLECTION)
    except TimeoutError:
        raise ConfigurationError(
            f"STORE_URL={shown}: no answer within {within_seconds:g} s; check that the store is up and reachable "
            "(STORE_TIMEOUT_SECONDS sets the deadline)"
        ) from None
    except ConfigurationError as exc:
        if str(exc).startswith("STORE_URL"):
            raise
        raise ConfigurationError(f"STORE_URL={shown}: {exc}") from None
    except Exception as exc:
        raise ConfigurationError(
            f"STORE_URL={shown}: cannot reach the store ({_reason(exc, url)}); start it or fix STORE_URL"
        ) from None
    return store


def _reason(exc: BaseException, url: str) -> str:
    """The innermost cause, one line, never the password."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = " ".join(str(exc).split()) or type(exc).__name__
    password = urlsplit(url).password
    return (text.replace(password, "***") if password else text)[:200]


def uvicorn_config(app: Any, host: str, port: int, forwarded_allow_ips: Sequence[str]) -> uvicorn.Config:
    """uvicorn for our servers: proxy headers believed only from ``FORWARDED_ALLOW_IPS``.

    uvicorn then puts the real client address in the ASGI scope, which is what the rate limit
    counts by; with none trusted, X-Forwarded-For is ignored.
    """
    trusted = list(forwarded_allow_ips)
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
