"""Stores by URL (``STORE_URL``), and the start-up check that the store answers.

=====================================  =============================================================
``memory://[?max_entries=N]``          this process only; at most N live entries per collection
``disk://PATH``                        SQLite files under PATH; the processes of one machine
``redis://`` / ``rediss://``           Redis (``rediss`` = TLS); every replica that reaches it
``valkey://`` / ``valkeys://``         Valkey (or Redis) through valkey-glide (``valkeys`` = TLS)
``postgresql://`` / ``postgres://``    PostgreSQL through asyncpg, one table (``?table=NAME``)
=====================================  =============================================================

Every network backend gets connect and read timeouts (``timeout``, default 3 s), so a server
that accepts connections and never answers fails a request in seconds, not in a minute.

Single use rests on ``delete()`` returning True for exactly one of several concurrent callers
(see ``Collection.claim``). Redis and Valkey answer ``DEL``'s count of removed keys; PostgreSQL's
``DELETE`` blocks a concurrent ``DELETE`` of the same row until the first commits, after which
the second re-reads the row, finds it gone and reports ``DELETE 0`` (READ COMMITTED); SQLite
serialises writers; the memory store is one event loop. tests/test_store_backends.py measures it.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
import warnings
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from key_value.aio.protocols import AsyncKeyValue

from ..core.errors import ConfigurationError

SETTING = "STORE_URL"
DEFAULT_TIMEOUT = 3.0
#: Live entries kept per collection by ``memory://``: a flood evicts the least recently used.
DEFAULT_MEMORY_MAX_ENTRIES = 10_000
#: How often (seconds) a PostgreSQL store removes rows whose TTL has passed.
POSTGRES_SWEEP_INTERVAL = 60.0
PROBE_COLLECTION = "mcp-oidc-probe"

_SCHEMES = "memory://, disk://PATH, redis://, rediss://, valkey://, valkeys:// or postgresql://"
_BACKENDS = {
    "memory": "memory",
    "disk": "disk",
    "redis": "Redis",
    "rediss": "Redis (TLS)",
    "valkey": "Valkey",
    "valkeys": "Valkey (TLS)",
    "postgresql": "PostgreSQL",
    "postgres": "PostgreSQL",
}


def redact(url: str) -> str:
    """The URL with any password (userinfo or ``password=`` query) replaced by ``***``.

    Works on the text, not on a parse: ``user:secret@host`` (no scheme) parses as scheme ``user``.
    """
    head, at, tail = url.rpartition("@")
    if at:
        start = head.find("//") + 2 if "//" in head else 0
        user, colon, _password = head[start:].partition(":")
        if colon:
            head = f"{head[:start]}{user}:***"
        url = f"{head}@{tail}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "password" not in parts.query.lower():
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(k, "***" if "password" in k.lower() else v) for k, v in pairs], safe="/:*")
    return urlunsplit(parts._replace(query=query))


def backend_name(url: str) -> str:
    return _BACKENDS.get(urlsplit(url).scheme.lower(), "unknown")


def _bad(url: str, problem: str, fix: str) -> ConfigurationError:
    return ConfigurationError(f"{SETTING} {redact(url)}: {problem}; {fix}")


def _options(url: str, query: str, allowed: Mapping[str, str]) -> dict[str, str]:
    """Our own query options, refusing any the backend would not understand."""
    found = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(found) - set(allowed))
    if unknown:
        known = ", ".join(f"{k}={v}" for k, v in allowed.items()) or "none"
        raise _bad(url, f"unknown option {unknown[0]!r}", f"options here are: {known}")
    return found


def store_from_url(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> AsyncKeyValue:
    """Build the store a ``STORE_URL`` names (see the module docstring). Nothing connects yet.

    Raises :class:`ConfigurationError` with a one-line message naming ``STORE_URL`` and the fix.
    """
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        parts.port  # noqa: B018  (raises ValueError on a non-numeric port)
    except ValueError:
        raise _bad(url, "not a URL (bad port or brackets)", f"use one of {_SCHEMES}") from None
    if not scheme:
        raise _bad(url, "no scheme", f"use one of {_SCHEMES}, e.g. redis://127.0.0.1:6379/0")
    if scheme == "memory":
        return _memory(url, parts.query)
    if scheme == "disk":
        return _disk(url, parts.netloc + parts.path, parts.query)
    if scheme in ("redis", "rediss"):
        return _redis(url, timeout)
    if scheme in ("valkey", "valkeys"):
        return _valkey(url, timeout)
    if scheme in ("postgresql", "postgres"):
        return _postgres(url, timeout)
    raise _bad(url, f"unsupported scheme {scheme!r}", f"use one of {_SCHEMES}")


# memory://


def _memory(url: str, query: str) -> AsyncKeyValue:
    options = _options(url, query, {"max_entries": str(DEFAULT_MEMORY_MAX_ENTRIES)})
    raw = options.get("max_entries")
    max_entries = DEFAULT_MEMORY_MAX_ENTRIES
    if raw is not None:
        if not raw.isdigit() or int(raw) < 1:
            raise _bad(url, f"max_entries={raw!r} is not a positive integer", "use e.g. memory://?max_entries=10000")
        max_entries = int(raw)
    return bounded_memory_store(max_entries)


def bounded_memory_store(max_entries: int = DEFAULT_MEMORY_MAX_ENTRIES) -> AsyncKeyValue:
    """A MemoryStore holding at most ``max_entries`` per collection, dropping expired entries.

    py-key-value-aio 0.5's MemoryStore compares wall-clock expiry times with the monotonic
    clock, so its entries never expire from memory (reads hide them, memory keeps them). Here
    each collection's cache runs on the wall clock: every put first drops what has expired,
    then the least recently used entry if the collection is full.
    """
    from cachetools import TLRUCache
    from key_value.aio.stores.memory import MemoryStore
    from key_value.aio.stores.memory.store import MemoryCacheEntry, MemoryCollection

    def expires(_key: str, value: MemoryCacheEntry, _now: float) -> float:
        return value.expires_at.timestamp() if value.expires_at is not None else float(sys.maxsize)

    class _Collection(MemoryCollection):
        def __init__(self, max_entries: int | None = None) -> None:
            super().__init__(max_entries)
            self._cache = TLRUCache(maxsize=max_entries or sys.maxsize, ttu=expires, timer=time.time)

    class _BoundedMemoryStore(MemoryStore):
        async def _setup_collection(self, *, collection: str) -> None:
            if collection not in self._cache:
                self._cache[collection] = _Collection(max_entries=self.max_entries_per_collection)

        def entry_count(self, collection: str) -> int:
            """Entries held in memory for a collection, expired or not (for tests and metrics)."""
            held = self._cache.get(collection)
            return int(held._cache.currsize) if held is not None else 0

    return _BoundedMemoryStore(max_entries_per_collection=max_entries)


# disk://PATH


def _disk(url: str, path: str, query: str) -> AsyncKeyValue:
    _options(url, query, {})
    if not path:
        raise _bad(url, "no directory", "use e.g. disk:///var/lib/mcp-oidc (three slashes for an absolute path)")
    from key_value.aio.stores.disk import DiskStore

    class _DiskStore(DiskStore):
        async def keys(self, collection: str | None = None, *, limit: int | None = None) -> list[str]:
            """The live keys of one collection (issue 10 item 5: admin listings).

            DiskStore keeps every collection in one SQLite cache under ``collection::key``;
            diskcache can only walk all of it, so this is O(entries in the store)."""
            prefix = f"{collection or self.default_collection}::"
            found: list[str] = []
            for key in self._cache.iterkeys():
                if isinstance(key, str) and key.startswith(prefix) and key in self._cache:
                    found.append(key[len(prefix) :])
                    if limit is not None and len(found) >= limit:
                        break
            return found

    try:
        return _DiskStore(directory=path)
    except OSError as exc:
        problem = f"cannot open the directory ({type(exc).__name__})"
        raise _bad(url, problem, "create it or fix its permissions") from exc


# redis:// and rediss://


def _redis(url: str, timeout: float) -> AsyncKeyValue:
    from key_value.aio.stores.redis import RedisStore
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    parts = urlsplit(url)
    db = parts.path.strip("/")
    if db and not (db.isdigit() and int(db) < 16_384):
        raise _bad(url, f"database {db!r} is not a number", "use e.g. redis://127.0.0.1:6379/0")
    try:
        client = Redis.from_url(
            url,
            decode_responses=True,  # RedisStore expects str replies
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            # One quick retry survives a pooled connection that died with a Redis restart;
            # the default (3 retries, up to 10 s backoff, timeouts included) would hold a
            # request for a minute. A timeout is not retried: the read timeout stays the bound.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1, supported_errors=(RedisConnectionError,)),
        )
    except ValueError as exc:
        raise _bad(url, f"invalid Redis URL ({exc})", "use e.g. redis://[:PASSWORD@]HOST:6379/0") from None
    store = RedisStore(client=client)
    # RedisStore does not close a client it was given: own it, so ``async with store`` cleans up.
    store._exit_stack.push_async_callback(client.aclose)
    return store


# valkey:// and valkeys://


def _valkey(url: str, timeout: float) -> AsyncKeyValue:
    from glide import (
        AdvancedGlideClientConfiguration,
        BackoffStrategy,
        GlideClientConfiguration,
        Logger,
        LogLevel,
        NodeAddress,
        ServerCredentials,
        TlsAdvancedConfiguration,
    )
    from key_value.aio.stores.valkey import ValkeyStore

    parts = urlsplit(url)
    tls = parts.scheme.lower() == "valkeys"
    options = _options(url, parts.query, {"ssl_ca_certs": "PATH"} if tls else {})
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise _bad(url, f"database {db!r} is not a number", "use e.g. valkey://127.0.0.1:6379/0")
    tls_config = None
    if "ssl_ca_certs" in options:
        try:
            with open(options["ssl_ca_certs"], "rb") as f:
                tls_config = TlsAdvancedConfiguration(root_pem_cacerts=f.read())
        except OSError as exc:
            raise _bad(url, f"cannot read ssl_ca_certs ({type(exc).__name__})", "give a readable PEM file") from None
    credentials = None
    if parts.password is not None:
        credentials = ServerCredentials(password=parts.password, username=parts.username or None)
    # glide logs connection failures to stderr itself; the caller reports them in one line.
    Logger.init(LogLevel.ERROR)
    millis = max(1, int(timeout * 1000))
    config = GlideClientConfiguration(
        [NodeAddress(parts.hostname or "localhost", parts.port or 6379)],
        use_tls=tls,
        credentials=credentials,
        database_id=int(db) if db else None,
        request_timeout=millis,  # glide's default is 250 ms
        reconnect_strategy=BackoffStrategy(num_of_retries=3, factor=100, exponent_base=2),
        advanced_config=AdvancedGlideClientConfiguration(connection_timeout=millis, tls_config=tls_config),
    )
    return ValkeyStore(config=config)


# postgresql:// and postgres://


def _postgres(url: str, timeout: float) -> AsyncKeyValue:
    from key_value.aio.stores.postgresql import PostgreSQLStore
    from key_value.aio.stores.postgresql.store import _validate_table_name

    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    table = dict(pairs).get("table", "mcp_oidc_store")
    try:
        _validate_table_name(table)
    except (ValueError, IndexError):
        problem = f"table={table!r} is not a plain SQL name"
        raise _bad(url, problem, "use letters, digits and _, e.g. table=mcp_oidc_store") from None
    # asyncpg reads the remaining query (sslmode, sslrootcert, ...) itself.
    dsn = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in pairs if k != "table"])))

    import asyncpg  # type: ignore[import-untyped]

    class _PostgresStore(PostgreSQLStore):
        """PostgreSQLStore with timeouts, a safe first start, and removal of expired rows."""

        _next_sweep = 0.0

        async def _create_pool(self) -> Any:
            return await asyncpg.create_pool(dsn, min_size=1, max_size=10, timeout=timeout, command_timeout=timeout)

        async def _setup(self) -> None:
            try:
                await super()._setup()
            except (asyncpg.UniqueViolationError, asyncpg.DuplicateTableError, asyncpg.DuplicateObjectError):
                # Two replicas starting on an empty database race to CREATE TABLE IF NOT
                # EXISTS; the loser's table exists now.
                pass

        async def _put_managed_entry(self, *, key: str, collection: str, managed_entry: Any) -> None:
            await super()._put_managed_entry(key=key, collection=collection, managed_entry=managed_entry)
            # PostgreSQL has no TTL of its own: sweep expired rows now and then, or they stay.
            now = time.monotonic()
            if now >= self._next_sweep:
                self._next_sweep = now + POSTGRES_SWEEP_INTERVAL
                await self.sweep_expired()

        async def keys(self, collection: str | None = None, *, limit: int | None = None) -> list[str]:
            """The live keys of one collection (issue 10 item 5: admin listings); the
            primary key (collection, key) serves the lookup."""
            await self.setup()
            rows = await self._initialized_pool.fetch(
                f"SELECT key FROM {self._table_name} WHERE collection = $1 "  # noqa: S608  (validated name)
                "AND (expires_at IS NULL OR expires_at > $2) ORDER BY key LIMIT $3",
                collection or self.default_collection,
                datetime.now().astimezone(),
                limit or 100_000,
            )
            return [str(row["key"]) for row in rows]

        async def sweep_expired(self) -> int:
            """Delete every row whose TTL has passed; returns how many."""
            status = await self._initialized_pool.execute(
                f"DELETE FROM {self._table_name} WHERE expires_at < $1",  # noqa: S608  (validated name)
                datetime.now().astimezone(),
            )
            return int(status.split()[-1])

    with warnings.catch_warnings():
        # py-key-value-aio marks its PostgreSQL store "unstable" (API may change); not news at start-up.
        warnings.simplefilter("ignore", UserWarning)
        return _PostgresStore(url=dsn, table_name=table)


# start-up check


def _cause(exc: BaseException) -> BaseException:
    """The most telling exception in a chain: the innermost OS-level error if any."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    for candidate in reversed(chain):
        if isinstance(candidate, (OSError, TimeoutError)) and type(candidate).__module__ == "builtins":
            return candidate
    for candidate in reversed(chain):
        if type(candidate).__module__.split(".")[0] not in ("key_value",):
            return candidate
    return chain[-1]


def _cause_name(exc: BaseException) -> str:
    cause = _cause(exc)
    name = type(cause).__name__
    text = str(cause).lower()
    # glide reports every connection failure as ClosingError; its text says which.
    if type(cause).__module__.startswith("glide"):
        if "refused" in text:
            return "ConnectionRefusedError"
        if "timed out" in text or "timeout" in text:
            return "TimeoutError"
    return name


def _hint(cause: str, exc: BaseException) -> str:
    text = f"{cause} {_cause(exc)}".lower()
    if any(w in text for w in ("password", "auth", "noperm", "permission denied for")):
        return "check the user and password in STORE_URL"
    if "invalidcatalogname" in text or ("database" in text and "does not exist" in text):
        return "create the database or fix its name in STORE_URL"
    if any(w in text for w in ("ssl", "tls", "certificate")):
        return "check the TLS settings (scheme, ssl_ca_certs) in STORE_URL"
    if "timeout" in text or "timed out" in text:
        return "check the address: something answers there but not as the store"
    return "check the address or start the server"


async def ensure_store_reachable(store: AsyncKeyValue, url: str, timeout: float = 5.0) -> None:
    """Prove the store answers: put, get and delete a probe key within ``timeout`` seconds.

    Raises :class:`ConfigurationError` with one line naming ``STORE_URL`` (password redacted),
    the backend and the cause, e.g. ``STORE_URL redis://127.0.0.1:6390/0: cannot reach the
    Redis store (ConnectionRefusedError); check the address or start the server``.
    """
    key = secrets.token_hex(16)
    probe = {"probe": key}

    async def round_trip() -> str | None:
        await store.put(key, probe, collection=PROBE_COLLECTION, ttl=60)
        got = await store.get(key, collection=PROBE_COLLECTION)
        deleted = await store.delete(key, collection=PROBE_COLLECTION)
        if got != probe:
            return "read back something else than it wrote"
        if not deleted:
            return "did not report deleting the probe key"
        return None

    backend = backend_name(url)
    try:
        wrong = await asyncio.wait_for(round_trip(), timeout)
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise ConfigurationError(
            f"{SETTING} {redact(url)}: the {backend} store did not answer within {timeout:g} s "
            f"(TimeoutError); {_hint('timeout', exc)}"
        ) from None
    except Exception as exc:
        cause = _cause_name(exc)
        raise ConfigurationError(
            f"{SETTING} {redact(url)}: cannot reach the {backend} store ({cause}); {_hint(cause, exc)}"
        ) from exc
    if wrong is not None:
        raise ConfigurationError(
            f"{SETTING} {redact(url)}: the {backend} store {wrong}; is it a key-value store this package supports?"
        )
