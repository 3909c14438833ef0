"""What a store failure is, and how a request reports one.

The SDK's bearer middleware knows two outcomes of a token check: a token or none (401). When the
store cannot be reached the verifiers refuse the token and call :func:`report_store_outage`;
:class:`~mcp_oidc_provider.web.outage.StoreOutageMiddleware` turns that request's 401 into a 503.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class OutageFlag:
    seen: bool = False


current_outage: ContextVar[OutageFlag | None] = ContextVar("mcp_oidc_provider_store_outage", default=None)


def report_store_outage() -> None:
    """Called where a store operation failed during a request."""
    outage = current_outage.get()
    if outage is not None:
        outage.seen = True


def is_store_failure(exc: BaseException) -> bool:
    """Whether an exception means the store could not be reached or answered wrongly."""
    if isinstance(exc, (OSError, ConnectionError, TimeoutError)):
        return True
    module = type(exc).__module__
    return module.startswith(("redis", "key_value", "valkey", "glide", "asyncpg", "diskcache", "sqlite3"))
