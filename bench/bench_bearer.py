"""What the bearer check costs: in process, and end to end over loopback HTTP.

    python bench/bench_bearer.py [--requests N] [--concurrency C] [--store memory|redis|both]

1. Micro-benchmarks (median of many timed calls, ``time.perf_counter_ns``):
   ``await provider.load_access_token(token)`` -- what the SDK runs on every MCP request --
   against its cost floor measured in the same run: a raw joserfc RS256 ``jwt.decode`` of the
   same token with the same key, plus one raw ``get`` of the grant from the same store.
2. End to end: ``tools/call whoami`` POSTs (one initialized session, JSON responses) with C in
   flight, against bench/bench_server.py with an OIDCProvider in front (logged in headlessly
   at the embedded development IdP), and against the same server without auth (the baseline).
   Servers run in their own processes, so the client's CPU does not count as the server's.

Every figure is printed as a ratio to its baseline from the same run; nothing passes or fails.
Redis (``--redis-url``, default db 8) is used only under a per-run collection prefix, and
exactly the keys under that prefix are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import hashlib
import json
import logging
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "bench_server.py"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/8"
PROTOCOL_VERSION = "2025-06-18"
RESOURCE_PATH = "/mcp"


# ---------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mcp_version() -> str:
    from importlib.metadata import version

    return version("mcp")


def redis_available(url: str) -> str | None:
    """None if Redis answers PING at ``url``, else why not."""
    try:
        import redis
    except ImportError:
        return "the 'redis' package is not installed"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure means "no Redis"
        return f"{type(exc).__name__}: {exc}"
    return None


def delete_redis_prefix(url: str, prefix: str) -> int:
    """Delete the keys this run created: those of collections named ``prefix__*``."""
    import redis

    assert prefix.startswith("bench-bearer-") and "*" not in prefix and "?" not in prefix
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}__*", count=500))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        return len(keys)
    finally:
        client.close()


def fmt_us(ns: float) -> str:
    return f"{ns / 1000:.1f}"


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    print(line)
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))))
    print(line)
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    print(line)


# ---------------------------------------------------------------------------------------------
# 1. micro-benchmarks


def make_store(kind: str, redis_url: str, prefix: str) -> tuple[Any, Any]:
    """(store the provider uses, the underlying store to close)."""
    if kind == "memory":
        from key_value.aio.stores.memory import MemoryStore

        store = MemoryStore()
        return store, store
    from key_value.aio.stores.redis import RedisStore
    from key_value.aio.wrappers.prefix_collections import PrefixCollectionsWrapper

    raw = RedisStore(url=redis_url)
    return PrefixCollectionsWrapper(raw, prefix=prefix), raw


def verification_key(keys: Any, token: str) -> Any:
    """The very key object the provider verifies with (else the public JWK, imported)."""
    from joserfc.jwk import KeySet

    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    by_kid = getattr(keys, "_by_kid", None)
    if isinstance(by_kid, dict) and header["kid"] in by_kid:
        return by_kid[header["kid"]]
    return KeySet.import_key_set(keys.public_jwks()).get_by_kid(header["kid"])


Op = Callable[[], Any]


async def time_ops(ops: dict[str, tuple[Op, bool, int, int]], blocks: int = 5) -> dict[str, float]:
    """Median ns per call of each op (fn, is_async, iterations, warmup calls).

    The ops alternate in blocks, so drift and neighbours' load hit them all alike.
    """
    samples: dict[str, list[int]] = {name: [] for name in ops}
    for fn, is_async, _, warmup in ops.values():
        for _ in range(warmup):
            if is_async:
                await fn()
            else:
                fn()
    clock = time.perf_counter_ns
    for _ in range(blocks):
        for name, (fn, is_async, iterations, _) in ops.items():
            out = samples[name]
            per_block = max(1, iterations // blocks)
            gc.collect()
            if is_async:
                for _ in range(per_block):
                    t0 = clock()
                    await fn()
                    out.append(clock() - t0)
            else:
                for _ in range(per_block):
                    t0 = clock()
                    fn()
                    out.append(clock() - t0)
    return {name: statistics.median(values) for name, values in samples.items()}


@dataclass
class MicroResult:
    store: str
    medians: dict[str, float]
    iterations: int
    cold_iterations: int

    @property
    def baseline(self) -> float:
        return self.medians["jwt.decode"] + self.medians["store.get"]

    def ratio(self, op: str) -> float:
        return self.medians[op] / self.baseline


async def micro(
    kind: str, iterations: int, redis_url: str, prefix: str, profile: bool, shared: dict[str, Any]
) -> MicroResult:
    """Time the bearer check and its floor on one store.

    ``shared`` carries the JWKS, the grant id and a pool of distinct tokens from the first
    store to the next, so RSA signing (about a millisecond a token) is paid once.
    """
    from joserfc import jwt
    from pydantic import SecretStr

    from mcp_oidc_provider import OIDCProvider, ProviderSettings, UpstreamSettings, generate_jwks
    from mcp_oidc_provider.crypto.minting import ACCESS_TOKEN_TYP, mint_access_token, new_grant_id
    from mcp_oidc_provider.store.records import GrantRecord
    from mcp_oidc_provider.store.repository import NAMESPACE

    store, closable = make_store(kind, redis_url, prefix)
    issuer = "http://127.0.0.1:9"  # never contacted: load_access_token needs only keys and store
    settings = ProviderSettings(
        issuer_url=issuer,
        upstream=UpstreamSettings(issuer="http://127.0.0.1:9/idp", client_id="bench", client_secret=SecretStr("bench")),
    )
    if not shared:
        shared.update(jwks=generate_jwks("RS256"), secret=secrets.token_bytes(32), grant_id=new_grant_id())
    provider = OIDCProvider(settings, store, jwks=shared["jwks"], secret_key=shared["secret"])
    try:
        ctx = await provider.context()
        resource = settings.resource_urls[0]
        grant = GrantRecord(
            grant_id=shared["grant_id"],
            client_id="bench-client",
            subject="alice",
            scopes=["mcp"],
            resource=resource,
            claims={"email": "alice@example.test", "name": "Alice Example"},
            created_at=time.time(),
        )
        await ctx.repo.save_grant(grant, 3600)

        def mint() -> str:
            return mint_access_token(
                ctx.keys,
                issuer=provider.issuer,
                subject=grant.subject,
                audience=resource,
                client_id=grant.client_id,
                scopes=grant.scopes,
                grant_id=grant.grant_id,
                issued_at=int(time.time()),
                lifetime=3600,
            )[0]

        cold_n = min(iterations, 1000)
        cold_warmup = 20
        if "pool" not in shared:
            shared["pool"] = [mint() for _ in range(cold_n + cold_warmup)]
        fresh = iter(shared["pool"])
        token = mint()
        access = await provider.load_access_token(token)
        if access is None or access.subject != "alice":
            raise RuntimeError(f"{kind}: load_access_token refused the benchmark's own token")
        key = verification_key(ctx.keys, token)
        grants = f"{NAMESPACE}-grants"
        if await store.get(grant.grant_id, collection=grants) is None:
            raise RuntimeError(f"{kind}: raw get found no grant in collection {grants!r}")
        warmup = max(50, iterations // 20)
        ops: dict[str, tuple[Op, bool, int, int]] = {
            "load_access_token": (lambda: provider.load_access_token(token), True, iterations, warmup),
            # a token never seen before: no cache anywhere can skip the signature check
            "load_access_token.new": (lambda: provider.load_access_token(next(fresh)), True, cold_n, cold_warmup),
            "jwt.decode": (lambda: jwt.decode(token, key, algorithms=["RS256"]), False, iterations, warmup),
            "store.get": (lambda: store.get(grant.grant_id, collection=grants), True, iterations, warmup),
            # where the time goes inside load_access_token (not part of any ratio)
            "keys.verify": (lambda: ctx.keys.verify(token, ACCESS_TOKEN_TYP), False, iterations, warmup),
            "repo.load_grant": (lambda: ctx.repo.load_grant(grant.grant_id), True, iterations, warmup),
        }
        medians = await time_ops(ops)
        if profile:
            await profile_load(provider, token, iterations, kind)
        return MicroResult(kind, medians, iterations, cold_n)
    finally:
        await provider.aclose()
        if kind == "redis":
            await closable.close()


async def profile_load(provider: Any, token: str, iterations: int, kind: str) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(iterations):
        await provider.load_access_token(token)
    profiler.disable()
    print(f"\ncProfile of {iterations} x load_access_token ({kind} store), top by own time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


# ---------------------------------------------------------------------------------------------
# 2. end to end


@dataclass
class Server:
    label: str
    port: int
    process: subprocess.Popen[bytes]
    log: Any
    auth: bool
    token: str | None = None
    runs: list[LoadResult] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return self.base + RESOURCE_PATH

    def log_tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return str(self.log.read().decode(errors="replace")[-3000:])


@dataclass
class LoadResult:
    requests: int
    seconds: float
    server_cpu: float | None
    client_cpu: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def server_cpu_us(self) -> float | None:
        return None if self.server_cpu is None else self.server_cpu / self.requests * 1e6


def start_server(label: str, auth: bool, mode: str, issuer: str | None, store_url: str, prefix: str | None) -> Server:
    port = free_port()
    cmd = [sys.executable, str(SERVER_SCRIPT), "--port", str(port), "--mode", mode]
    if auth:
        assert issuer is not None
        cmd += ["--auth", "--upstream-issuer", issuer, "--store-url", store_url]
        if prefix:
            cmd += ["--redis-prefix", prefix]
    log = tempfile.TemporaryFile()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("JWKS", None)
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603 - our own script
    return Server(label, port, process, log, auth)


def wait_up(server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.label} server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            # Any answer (a 404 here) means uvicorn is serving; GET /mcp may open an SSE stream.
            if httpx2.get(server.base + "/bench-is-up", timeout=1).status_code < 500:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{server.label} server did not come up:\n{server.log_tail()}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    server.log.close()


def login_client(auth_base: str, resource: str) -> tuple[str, dict[str, Any]]:
    """Register a client, log in as alice at the dev IdP, redeem the code: (access token, client).

    The same steps as tests/support/harness.py (register, authorize with PKCE S256 and a
    resource indicator, headless browser login, authorization_code grant).
    """
    from mcp_oidc_provider.run.headless_login import login_headlessly

    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    with httpx2.Client(timeout=15) as http:
        response = http.post(auth_base + "/register", json={"redirect_uris": [redirect_uri], "client_name": "bench"})
        if response.status_code != 201:
            raise RuntimeError(f"registration failed: {response.status_code} {response.text}")
        client = response.json()
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        query = {
            "response_type": "code",
            "client_id": client["client_id"],
            "redirect_uri": redirect_uri,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": secrets.token_urlsafe(16),
            "resource": resource,
        }
        result = login_headlessly(f"{auth_base}/authorize?{urlencode(query)}", redirect_uri, "alice")
        if "code" not in result:
            raise RuntimeError(f"login did not return a code: {result}")
        form = {
            "grant_type": "authorization_code",
            "code": result["code"],
            "code_verifier": verifier,
            "redirect_uri": redirect_uri,
            "client_id": client["client_id"],
            "resource": resource,
        }
        if client.get("client_secret"):
            form["client_secret"] = client["client_secret"]
        response = http.post(auth_base + "/token", data=form)
        if response.status_code != 200:
            raise RuntimeError(f"token request failed: {response.status_code} {response.text}")
        return str(response.json()["access_token"]), client


def login(server: Server) -> str:
    """An access token for ``server``'s MCP endpoint."""
    return login_client(server.base, server.mcp_url)[0]


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time of process ``pid``: the sum of its threads' on-CPU nanoseconds from
    /proc/PID/task/*/schedstat (utime/stime in /proc/PID/stat count 10 ms ticks, too coarse
    for a few hundred requests); /proc/PID/stat where schedstat is missing."""
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def call_body(request_id: int) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
    ).encode()


async def load(server: Server, requests: int, concurrency: int, warmup: int) -> LoadResult:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if server.token is not None:
        headers["Authorization"] = f"Bearer {server.token}"
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx2.AsyncClient(headers=headers, limits=limits, timeout=60) as http:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "bench_bearer", "version": "0"},
            },
        }
        response = await http.post(server.mcp_url, json=init)
        if response.status_code != 200:
            raise RuntimeError(f"{server.label}: initialize -> {response.status_code} {response.text[:300]}")
        session_id = response.headers.get("mcp-session-id")
        if session_id:
            http.headers["mcp-session-id"] = session_id
        http.headers["mcp-protocol-version"] = response.json()["result"]["protocolVersion"]
        response = await http.post(server.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        if response.status_code not in (200, 202, 204):
            raise RuntimeError(f"{server.label}: notifications/initialized -> {response.status_code}")

        response = await http.post(server.mcp_url, content=call_body(1))
        if response.status_code != 200:
            raise RuntimeError(f"{server.label}: tools/call -> {response.status_code} {response.text[:300]}")
        result = response.json().get("result") or {}
        if result.get("isError"):
            raise RuntimeError(f"{server.label}: tools/call failed: {result}")
        who = json.loads(result["content"][0]["text"])
        if server.auth and who.get("sub") != "alice":
            raise RuntimeError(f"{server.label}: whoami did not see the logged-in user: {who}")

        async def run(total: int, first_id: int) -> int:
            next_id = first_id
            end = first_id + total
            errors = 0

            async def worker() -> None:
                nonlocal next_id, errors
                while next_id < end:
                    request_id = next_id
                    next_id += 1
                    r = await http.post(server.mcp_url, content=call_body(request_id))
                    if r.status_code != 200 or b'"isError":true' in r.content:
                        errors += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return errors

        await run(warmup, 10)
        gc.collect()
        cpu0, client0, t0 = process_cpu_seconds(server.process.pid), time.process_time(), time.perf_counter()
        errors = await run(requests, 10 + warmup)
        t1, client1, cpu1 = time.perf_counter(), time.process_time(), process_cpu_seconds(server.process.pid)
    server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return LoadResult(requests, t1 - t0, server_cpu, client1 - client0, errors)


@contextlib.contextmanager
def dev_idp() -> Iterator[str]:
    from mcp_oidc_provider.run.devidp import run_dev_idp

    logging.getLogger("mcp_oidc_provider.run.devidp").setLevel(logging.ERROR)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with run_dev_idp() as issuer:
        yield issuer


def end_to_end(args: argparse.Namespace, stores: list[str], prefix: str) -> list[Server]:
    servers: list[Server] = []
    with dev_idp() as issuer:
        try:
            servers.append(start_server("no auth (baseline)", False, args.mode, None, "", None))
            for kind in stores:
                store_url = "memory://" if kind == "memory" else args.redis_url
                servers.append(
                    start_server(
                        f"auth, {kind} store", True, args.mode, issuer, store_url, prefix if kind == "redis" else None
                    )
                )
            for server in servers:
                wait_up(server)
            for server in servers:
                if server.auth:
                    server.token = login(server)

            async def drive() -> None:
                warmup = max(50, args.requests // 10)
                for _ in range(args.rounds):
                    for server in servers:
                        server.runs.append(await load(server, args.requests, args.concurrency, warmup))

            asyncio.run(drive())
        finally:
            for server in servers:
                stop_server(server)
    return servers


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1500, help="tools/call requests per measured run (1500)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (8)")
    parser.add_argument(
        "--store", choices=("memory", "redis", "both"), default="both", help="store(s) behind the provider (both)"
    )
    parser.add_argument("--iterations", type=int, default=3000, help="timed calls per micro-benchmark op (3000)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="end-to-end runs per server, interleaved; the best counts (3)"
    )
    parser.add_argument("--mode", choices=("session", "stateless"), default="session", help="MCP transport mode")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help=f"({DEFAULT_REDIS_URL})")
    parser.add_argument("--skip-micro", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--profile", action="store_true", help="also cProfile load_access_token")
    args = parser.parse_args()

    stores = ["memory", "redis"] if args.store == "both" else [args.store]
    notes: list[str] = []
    if "redis" in stores:
        why = redis_available(args.redis_url)
        if why is not None:
            if args.store == "redis":
                print(f"error: Redis at {args.redis_url} is unavailable: {why}", file=sys.stderr)
                return 2
            stores.remove("redis")
            notes.append(f"Redis skipped ({args.redis_url}: {why})")
    prefix = f"bench-bearer-{secrets.token_hex(6)}"
    # The loopback "upstream" of the in-process provider is never contacted: keep its
    # development-only warning out of the output (errors still show).
    logging.getLogger("mcp_oidc_provider").setLevel(logging.ERROR)

    started = time.perf_counter()
    print(
        f"bench_bearer: python {platform.python_version()}, mcp {mcp_version()}, {os.cpu_count()} CPUs, "
        f"stores {', '.join(stores)}"
    )
    micro_results: list[MicroResult] = []
    servers: list[Server] = []
    try:
        if not args.skip_micro:
            shared: dict[str, Any] = {}
            for kind in stores:
                micro_results.append(
                    asyncio.run(micro(kind, args.iterations, args.redis_url, prefix, args.profile, shared))
                )
        if not args.skip_e2e:
            servers = end_to_end(args, stores, prefix)
    finally:
        if "redis" in stores:
            deleted = delete_redis_prefix(args.redis_url, prefix)
            notes.append(f"deleted {deleted} Redis keys under {prefix}__*")

    if micro_results:
        header = ["median us/op", *(r.store for r in micro_results)]

        def row(label: str, op: str) -> list[str]:
            return [label, *(fmt_us(r.medians[op]) for r in micro_results)]

        rows = [
            row("(a) load_access_token, same token", "load_access_token"),
            row("(a) load_access_token, new token", "load_access_token.new"),
            row("(b) joserfc jwt.decode RS256", "jwt.decode"),
            row("(b) raw store.get of the grant", "store.get"),
            ["(b) baseline sum", *(fmt_us(r.baseline) for r in micro_results)],
            ["RATIO (a) same token / (b)", *(fmt_ratio(r.ratio("load_access_token")) for r in micro_results)],
            ["RATIO (a) new token / (b)", *(fmt_ratio(r.ratio("load_access_token.new")) for r in micro_results)],
            row("  detail: SigningKeys.verify, same token", "keys.verify"),
            row("  detail: repo.load_grant (get + model)", "repo.load_grant"),
        ]
        cold = micro_results[0].cold_iterations
        print_table(
            f"1. bearer check in process (median of {args.iterations} timed calls per op; {cold} for new tokens)",
            header,
            rows,
        )

    if servers:
        baseline = servers[0]
        base_rps = max(r.rps for r in baseline.runs)
        base_cpu = [r.server_cpu_us for r in baseline.runs if r.server_cpu_us is not None]
        header = ["server", "req/s", "ratio", "srv CPU us/req", "ratio", "srv CPU", "errors"]
        rows = []
        for server in servers:
            best = max(server.runs, key=lambda r: r.rps)
            cpus = [r.server_cpu_us for r in server.runs if r.server_cpu_us is not None]
            cpu_us = min(cpus) if cpus else None
            rows.append(
                [
                    server.label,
                    f"{best.rps:.0f}",
                    fmt_ratio(best.rps / base_rps),
                    "n/a" if cpu_us is None else f"{cpu_us:.0f}",
                    fmt_ratio(cpu_us / min(base_cpu)) if cpu_us is not None and base_cpu else "n/a",
                    "n/a" if best.server_cpu is None else f"{best.server_cpu / best.seconds:.0%}",
                    str(sum(r.errors for r in server.runs)),
                ]
            )
        print_table(
            f"2. tools/call whoami over loopback HTTP ({args.mode} mode, JSON responses, {args.requests} requests "
            f"x {args.rounds} rounds, concurrency {args.concurrency}; best round)",
            header,
            rows,
        )
        client_busy = max(r.client_cpu / r.seconds for s in servers for r in s.runs)
        print(f"client process CPU: up to {client_busy:.0%} of one core (near 100% means the client limits req/s)")
    for note in notes:
        print(f"note: {note}")
    print(f"total {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
