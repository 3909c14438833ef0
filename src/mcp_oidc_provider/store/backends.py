"""Stores by URL: the py-key-value-aio backend for each ``STORE_URL`` scheme."""

from __future__ import annotations

from urllib.parse import urlsplit

from key_value.aio.protocols import AsyncKeyValue

from ..core.errors import ConfigurationError


def store_from_url(url: str) -> AsyncKeyValue:
    """Build a store from a URL: ``memory://``, ``disk://PATH`` or ``redis://HOST:PORT/DB``.

    ``memory://`` lives and dies with the process; ``disk://`` is shared by the processes of one
    machine; ``redis://`` (or ``rediss://``) is shared by every replica that can reach it.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from key_value.aio.stores.memory import MemoryStore

        return MemoryStore()
    if scheme == "disk":
        from key_value.aio.stores.disk import DiskStore

        parts = urlsplit(url)
        path = parts.netloc + parts.path
        if not path:
            raise ConfigurationError("disk:// store URL needs a directory, e.g. disk:///var/lib/mcp-oidc")
        return DiskStore(directory=path)
    if scheme in ("redis", "rediss"):
        from key_value.aio.stores.redis import RedisStore

        try:
            return RedisStore(url=url)
        except ValueError as exc:
            raise ConfigurationError("invalid redis:// store URL") from exc
    raise ConfigurationError(f"unsupported store URL scheme {scheme!r}: use memory://, disk://PATH or redis://")
