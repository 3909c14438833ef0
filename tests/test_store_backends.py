"""STORE_URL backends: single-use claims hold on each, records expire, bad and dead stores fail fast in one line.

Shared services: Redis on 127.0.0.1:6379 (DBs 14 and 15, unique collection names, nothing flushed) and
PostgreSQL on 127.0.0.1:5432 (a database of our own, created and dropped here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
import trustme
from support.claim_worker import Value, race
from support.net import ROOT, free_port

from mcp_oidc_provider.core.errors import ConfigurationError
from mcp_oidc_provider.store.backends import DEFAULT_MEMORY_MAX_ENTRIES, ensure_store_reachable, store_from_url
from mcp_oidc_provider.store.repository import Collection

VALUES = 200
CLAIMERS = 16
REDIS_DB = 14
VALKEY_DB = 15
WORKER = ROOT / "tests" / "support" / "claim_worker.py"
#: Double redemptions and lost races per backend, for the summary at the end of the run.
MEASURED: dict[str, dict[str, int]] = {}


# shared services


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    name = f"mcp_oidc_stores_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@contextlib.contextmanager
def tls_front_for_redis(ca: trustme.CA) -> Iterator[int]:
    """A TLS listener on loopback that forwards to the plain Redis: a stand-in for a TLS Redis/Valkey.

    It runs on its own thread: valkey-glide connects synchronously, blocking the caller's event loop.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    loop = asyncio.new_event_loop()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    ports: queue.Queue[int] = queue.Queue()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0, ssl=context))
        ports.put(server.sockets[0].getsockname()[1])
        loop.run_forever()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield ports.get(timeout=5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """Accepts TCP connections and never says a word (a hung server, a wrong port behind a firewall)."""
    held: list[asyncio.StreamWriter] = []

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()


def url_for(backend: str, *, postgres: str, tmp_path: Path, tls_port: int = 0, ca: Path | None = None) -> str:
    return {
        "disk": f"disk://{tmp_path}/kv",
        "redis": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "rediss": f"rediss://127.0.0.1:{tls_port}/{REDIS_DB}?ssl_ca_certs={ca}",
        "valkey": f"valkey://127.0.0.1:6379/{VALKEY_DB}",
        "valkeys": f"valkeys://127.0.0.1:{tls_port}/{VALKEY_DB}?ssl_ca_certs={ca}",
        "postgresql": postgres,
    }[backend]


# the claim race


async def assert_every_record_has_a_ttl(backend: str, url: str, collection: str) -> None:
    name = f"mcp-oidc-{collection}"
    if backend in ("redis", "rediss", "valkey", "valkeys"):
        client = aioredis.Redis(db=REDIS_DB if backend.startswith("redis") else VALKEY_DB, decode_responses=True)
        try:
            keys = [k async for k in client.scan_iter(match=f"{name}::*")]
            ttls = [await client.ttl(k) for k in keys]
        finally:
            await client.aclose()
        assert len(keys) == VALUES
        assert all(0 < t <= 300 for t in ttls), sorted(set(ttls))
    elif backend == "postgresql":
        conn = await asyncpg.connect(url)
        try:
            total, without = await conn.fetchrow(
                "SELECT count(*), count(*) FILTER (WHERE expires_at IS NULL) FROM mcp_oidc_store WHERE collection = $1",
                name,
            )
        finally:
            await conn.close()
        assert (total, without) == (VALUES, 0)


@pytest.fixture(scope="module")
async def workers() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Two claim-race processes, started once for every backend (each start imports the package)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    yield procs
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 10)


async def tell(procs: list[asyncio.subprocess.Process], line: str) -> list[str]:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(line.encode() + b"\n")
        await proc.stdin.drain()
    answers = []
    for proc in procs:
        assert proc.stdout is not None
        answers.append((await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip())
    return answers


@pytest.mark.parametrize("backend", ["disk", "redis", "rediss", "valkey", "valkeys", "postgresql"])
async def test_two_processes_of_sixteen_claimers_redeem_each_value_exactly_once(
    backend: str,
    postgres_url: str,
    tmp_path: Path,
    tls_ca: tuple[trustme.CA, Path],
    workers: list[asyncio.subprocess.Process],
) -> None:
    with tls_front_for_redis(tls_ca[0]) as tls_port:
        url = url_for(backend, postgres=postgres_url, tmp_path=tmp_path, tls_port=tls_port, ca=tls_ca[1])
        collection = f"race-{uuid.uuid4().hex[:8]}"
        store = store_from_url(url)
        await ensure_store_reachable(store, url)
        seeded = Collection(store, collection, Value)
        for i in range(VALUES):
            await seeded.put(f"v{i}", Value(n=i), ttl=300)
        await assert_every_record_has_a_ttl(backend, url, collection)

        assert await tell(workers, f"prepare {url} {collection} {VALUES} {CLAIMERS}") == ["ready", "ready"]
        results = [json.loads(answer) for answer in await tell(workers, "go")]  # both start together
        await store.close()  # type: ignore[attr-defined]

    per_value = [a + b for a, b in zip(results[0]["wins"], results[1]["wins"], strict=True)]
    lost_races = sum(r["seen"] for r in results) - VALUES
    MEASURED[backend] = {
        "double": sum(1 for n in per_value if n > 1),
        "unclaimed": per_value.count(0),
        "read_but_lost": lost_races,
    }
    assert max(per_value) == 1, f"{backend}: a value was redeemed {max(per_value)} times"
    assert min(per_value) == 1, f"{backend}: a value was never redeemed"
    # The race was real: claimers other than the winner read the record before it went. (SQLite calls
    # are synchronous, so disk claimers contend only across the two processes, and rarely.)
    assert lost_races > 0 or backend == "disk"


async def test_thirty_two_claimers_in_one_process_redeem_each_memory_value_exactly_once() -> None:
    store = store_from_url("memory://")
    seeded = Collection(store, "race", Value)
    for i in range(VALUES):
        await seeded.put(f"v{i}", Value(n=i), ttl=300)
    (wins_a, seen_a), (wins_b, seen_b) = await asyncio.gather(
        race(store, "race", VALUES, CLAIMERS), race(store, "race", VALUES, CLAIMERS)
    )
    per_value = [a + b for a, b in zip(wins_a, wins_b, strict=True)]
    MEASURED["memory"] = {
        "double": sum(1 for n in per_value if n > 1),
        "unclaimed": per_value.count(0),
        "read_but_lost": seen_a + seen_b - VALUES,
    }
    # No await between a memory get and its delete: one event loop serialises the claims.
    assert per_value == [1] * VALUES


def test_zz_print_measured_double_redemptions() -> None:
    print("\nclaim race (2 x 16 claimers x 200 values):", json.dumps(MEASURED, sort_keys=True))


# memory:// is bounded (issue 8 §4)


async def test_a_flood_of_puts_leaves_memory_within_its_bound() -> None:
    store = store_from_url("memory://?max_entries=200")
    for i in range(2_000):
        await store.put(f"flood-{i}", {"i": i}, collection="flood", ttl=3600)
    assert store.entry_count("flood") == 200  # type: ignore[attr-defined]
    # The newest survive; the flood pushed out the oldest.
    assert await store.get("flood-1999", collection="flood") == {"i": 1999}
    assert await store.get("flood-0", collection="flood") is None


def test_the_default_memory_store_is_bounded_too() -> None:
    assert store_from_url("memory://").max_entries_per_collection == DEFAULT_MEMORY_MAX_ENTRIES  # type: ignore[attr-defined]


async def test_expired_memory_entries_are_dropped_not_kept() -> None:
    store = store_from_url("memory://")
    for i in range(300):
        await store.put(f"short-{i}", {"i": i}, collection="ttl", ttl=1)
    assert store.entry_count("ttl") == 300  # type: ignore[attr-defined]
    await asyncio.sleep(1.05)
    await store.put("later", {}, collection="ttl", ttl=60)
    assert store.entry_count("ttl") == 1  # type: ignore[attr-defined]


async def test_postgresql_rows_whose_ttl_passed_are_swept(postgres_url: str) -> None:
    url = postgres_url + "?table=sweep_test"
    store = store_from_url(url)
    for i in range(50):
        await store.put(f"s{i}", {"i": i}, collection="sweep", ttl=1)
    await asyncio.sleep(1.05)
    assert await store.sweep_expired() == 50  # type: ignore[attr-defined]
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM sweep_test") == 0
    finally:
        await conn.close()
    await store.close()  # type: ignore[attr-defined]


# bad URLs: one line naming STORE_URL, with the fix


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mongodb://127.0.0.1/x", "unsupported scheme 'mongodb'; use one of memory://"),
        ("localhost:6379", "unsupported scheme 'localhost'"),
        ("user:hunter2@127.0.0.1:6379", "unsupported scheme 'user'"),
        ("127.0.0.1:6379", "no scheme"),
        ("redis://127.0.0.1:63x9/0", "not a URL"),
        ("redis://:hunter2@127.0.0.1:6379/zero", "database 'zero' is not a number; use e.g. redis://"),
        ("valkey://127.0.0.1:6379/x", "database 'x' is not a number"),
        ("disk://", "no directory; use e.g. disk:///"),
        ("memory://?max_entries=-5", "max_entries='-5' is not a positive integer"),
        ("memory://?maxentries=5", "unknown option 'maxentries'"),
        ("postgresql://u:hunter2@127.0.0.1/db?table=x;drop", "is not a plain SQL name"),
        ("valkeys://127.0.0.1:1/0?ssl_ca_certs=/nonexistent.pem", "cannot read ssl_ca_certs"),
    ],
)
def test_a_bad_store_url_is_refused_in_one_line_that_names_store_url_and_the_fix(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        store_from_url(url)
    message = str(caught.value)
    assert message.startswith("STORE_URL ")
    assert "\n" not in message
    assert says in message
    assert "hunter2" not in message


# dead and silent stores


@pytest.mark.parametrize("backend", ["redis", "rediss", "valkey", "postgresql"])
async def test_a_store_on_a_closed_port_fails_within_three_seconds_in_one_line(backend: str, tmp_path: Path) -> None:
    port = free_port()
    url = {
        "redis": f"redis://:hunter2@127.0.0.1:{port}/0",
        "rediss": f"rediss://127.0.0.1:{port}/0",
        "valkey": f"valkey://:hunter2@127.0.0.1:{port}/0",
        "postgresql": f"postgresql://postgres:hunter2@127.0.0.1:{port}/x",
    }[backend]
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        await ensure_store_reachable(store_from_url(url), url)
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert message.startswith(f"STORE_URL {backend}")
    assert f"127.0.0.1:{port}" in message
    assert "cannot reach the" in message
    assert "(ConnectionRefusedError); check the address or start the server" in message
    assert "\n" not in message and "hunter2" not in message


@pytest.mark.parametrize("backend", ["redis", "rediss", "valkey", "valkeys", "postgresql"])
async def test_a_store_that_accepts_and_never_answers_fails_within_the_timeout(backend: str) -> None:
    async with silent_server() as port:
        url = {
            "redis": f"redis://127.0.0.1:{port}/0",
            "rediss": f"rediss://127.0.0.1:{port}/0",
            "valkey": f"valkey://127.0.0.1:{port}/0",
            "valkeys": f"valkeys://127.0.0.1:{port}/0",
            "postgresql": f"postgresql://postgres@127.0.0.1:{port}/x",
        }[backend]
        started = time.monotonic()
        with pytest.raises(ConfigurationError) as caught:
            await ensure_store_reachable(store_from_url(url, timeout=1.0), url, timeout=5)
        elapsed = time.monotonic() - started
    # The store's own 1 s connect/read timeout answers, long before the probe's 5 s.
    assert elapsed < 2.5, elapsed
    message = str(caught.value)
    assert message.startswith(f"STORE_URL {url}: ") and "\n" not in message
    assert "(TimeoutError)" in message


async def test_a_wrong_redis_password_says_to_check_the_password(tmp_path: Path) -> None:
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        *["redis-server", "--port", str(port), "--requirepass", "right-password", "--save", "", "--dir", str(tmp_path)],
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            await asyncio.sleep(0.02)
        good = f"redis://:right-password@127.0.0.1:{port}/0"
        await ensure_store_reachable(store_from_url(good), good)
        url = f"redis://:wrong-password@127.0.0.1:{port}/0"
        with pytest.raises(ConfigurationError) as caught:
            await ensure_store_reachable(store_from_url(url), url)
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 5)
    message = str(caught.value)
    assert "wrong-password" not in message and ":***@" in message
    assert message.endswith("check the user and password in STORE_URL"), message
