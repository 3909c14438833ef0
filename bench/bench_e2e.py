"""What authentication costs an MCP server, end to end: three setups against one no-auth baseline.

    python bench/bench_e2e.py [--quick] [--rounds N] [--no-profile] [--keep-profiles DIR]

Setups (each server in its own process under uvicorn, see bench_server.py):

- ``integrated (memory)``: an OIDCProvider on ``memory://``, wrapped in ``provider.protect()``;
- ``integrated (redis)``: the same on Redis;
- ``proxy (redis)``: the authorization server alone (``build_auth_app``) plus an MCP server
  with an ``OIDCTokenVerifier`` on the same Redis, wrapped in ``StoreOutageMiddleware``;
- ``baseline``: the same MCP server without auth.

Each authenticated setup gets a real access token by a real login (dynamic registration,
PKCE authorize, headless login at the embedded development IdP, code redemption). Load is
``tools/call whoami`` POSTs over streamable HTTP (one initialized session per cell, JSON
responses) at concurrency 1 and 8. A round measures every (server, concurrency) cell once, in
an order rotated from round to round; figures are medians over rounds of per-round values:

- throughput ratio: req/s of the setup / req/s of the baseline in the same round;
- extra server CPU per request: (server process CPU time from /proc / requests) minus the
  baseline's in the same round.

Then, unless ``--no-profile``, each server is sampled with py-spy (attached by pid, idle samples
dropped) during a separate load run at c=8, and the samples are grouped into components (see
``classify``) and scaled to the measured CPU microseconds per request of that run. Last, the
revocation propagation: how long a token revoked at the authorization server keeps working at
the proxy-mode MCP server (5 trials; "n/a" on a package without a
``revocation_propagation_seconds`` setting).

Redis: only collections under a per-run prefix in db 8 (``--redis-url``); exactly those keys
are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_bearer import (  # a sibling script, not a package
    DEFAULT_REDIS_URL,
    SERVER_SCRIPT,
    LoadResult,
    Server,
    call_body,
    delete_redis_prefix,
    dev_idp,
    free_port,
    load,
    login_client,
    mcp_version,
    print_table,
    redis_available,
    stop_server,
    wait_up,
)

BASELINE = "baseline (no auth)"
SETUPS = ("integrated (memory)", "integrated (redis)", "proxy (redis)")
CONCURRENCIES = (1, 8)


# ---------------------------------------------------------------------------------------------
# servers and login


def start(label: str, role: str, *extra: str, auth: bool = True) -> Server:
    port = free_port()
    cmd = [sys.executable, str(SERVER_SCRIPT), "--port", str(port), "--role", role, *extra]
    log = tempfile.TemporaryFile()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("JWKS", "SECRET_KEY", "ENCRYPTION_KEYS"):
        env.pop(name, None)
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603 - our own script
    return Server(label, port, process, log, auth)


@dataclass
class Login:
    token: str
    client: dict[str, Any]


def login(auth_base: str, resource: str) -> Login:
    """Register, authorize with PKCE S256 and a resource indicator, log in as alice, redeem the code."""
    return Login(*login_client(auth_base, resource))


@dataclass
class Bench:
    servers: dict[str, Server]  # label -> the server that takes the MCP load
    auth_server: Server | None  # proxy mode's authorization server
    issuer: str
    prefixes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def servers_up(args: argparse.Namespace, with_redis: bool) -> Any:
    run_id = secrets.token_hex(5)
    with dev_idp() as issuer:
        started: list[Server] = []
        bench = Bench({}, None, issuer)
        try:

            def add(server: Server) -> Server:
                started.append(server)
                return server

            bench.servers[BASELINE] = add(start(BASELINE, "noauth", auth=False))
            up = ["--upstream-issuer", issuer]
            bench.servers[SETUPS[0]] = add(start(SETUPS[0], "integrated", *up, "--store-url", "memory://"))
            if with_redis:
                int_prefix, proxy_prefix = f"bench-bearer-{run_id}-int", f"bench-bearer-{run_id}-proxy"
                bench.prefixes += [int_prefix, proxy_prefix]
                redis = ["--store-url", args.redis_url]
                bench.servers[SETUPS[1]] = add(
                    start(SETUPS[1], "integrated", *up, *redis, "--redis-prefix", int_prefix)
                )
                mcp_port = free_port()
                auth = add(
                    start(
                        "auth server",
                        "auth-server",
                        *up,
                        *redis,
                        "--redis-prefix",
                        proxy_prefix,
                        "--resource-urls",
                        f"http://127.0.0.1:{mcp_port}/mcp",
                    )
                )
                bench.auth_server = auth
                wait_up(auth)  # the MCP server reads the seed the auth server writes at start
                proxy = Server(SETUPS[2], mcp_port, None, tempfile.TemporaryFile(), True)  # type: ignore[arg-type]
                cmd = [
                    sys.executable,
                    str(SERVER_SCRIPT),
                    "--port",
                    str(mcp_port),
                    "--role",
                    "proxy-mcp",
                    "--auth-issuer",
                    auth.base,
                    *redis,
                    "--redis-prefix",
                    proxy_prefix,
                ]
                env = {**os.environ, "PYTHONUNBUFFERED": "1"}
                proxy.process = subprocess.Popen(cmd, stdout=proxy.log, stderr=subprocess.STDOUT, env=env)  # noqa: S603
                bench.servers[SETUPS[2]] = add(proxy)
            for server in started:
                wait_up(server)
            for label, server in bench.servers.items():
                if server.auth:
                    auth_base = bench.auth_server.base if label == SETUPS[2] else server.base  # type: ignore[union-attr]
                    server.token = login(auth_base, server.mcp_url).token
            yield bench
        finally:
            for server in started:
                stop_server(server)
            for prefix in bench.prefixes:
                print(f"note: deleted {delete_redis_prefix(args.redis_url, prefix)} Redis keys under {prefix}__*")


# ---------------------------------------------------------------------------------------------
# measurement


async def measure(
    bench: Bench, rounds: int, requests: dict[int, int], warmup: int
) -> dict[tuple[str, int], list[LoadResult]]:
    cells = [(label, c) for c in CONCURRENCIES for label in bench.servers]
    results: dict[tuple[str, int], list[LoadResult]] = collections.defaultdict(list)
    for r in range(rounds):
        # Rotate the order so no server always runs first (or right after the same neighbour).
        shift = r % len(cells)
        for label, c in cells[shift:] + cells[:shift]:
            result = await load(bench.servers[label], requests[c], c, warmup)
            if result.errors:
                raise RuntimeError(f"{label} c={c}: {result.errors} requests failed")
            results[(label, c)].append(result)
    return results


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def summarize(results: dict[tuple[str, int], list[LoadResult]], labels: list[str]) -> list[list[str]]:
    rows = []
    for label in labels:
        row = [label]
        for c in CONCURRENCIES:
            base = results[(BASELINE, c)]
            runs = results[(label, c)]
            if label == BASELINE:
                row.append(f"{statistics.median(r.rps for r in runs):.0f} req/s")
            else:
                lo, mid, hi = quartiles([a.rps / b.rps for a, b in zip(runs, base, strict=True)])
                row.append(f"{mid:.2f}x [{lo:.2f}-{hi:.2f}]")
        for c in CONCURRENCIES:
            base = results[(BASELINE, c)]
            runs = results[(label, c)]
            if any(r.server_cpu_us is None for r in runs + base):
                row.append("n/a")
            elif label == BASELINE:
                row.append(f"{statistics.median(r.server_cpu_us for r in runs):.0f} total")  # type: ignore[misc]
            else:
                extra = [a.server_cpu_us - b.server_cpu_us for a, b in zip(runs, base, strict=True)]  # type: ignore[operator]
                lo, mid, hi = quartiles(extra)
                row.append(f"{mid:+.0f} [{lo:+.0f}..{hi:+.0f}]")
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# profile (py-spy)


def user_system_ticks(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


COMPONENTS = (
    "signature check",
    "store read",
    "our code",
    "pydantic",
    "SDK auth middleware",
    "protect()/guard wrappers",
    "the rest",
    "kernel (syscalls)",
)


def owner_of(path: str) -> str | None:
    """Who a frame's code belongs to; None for libraries and the standard library (they count
    for whoever called them)."""
    if "/mcp_oidc_provider/" in path:
        return "wrappers" if path.endswith(("/guard.py", "/outage.py")) else "ours"
    if "/mcp/server/auth/" in path or path.endswith(
        ("starlette/middleware/authentication.py", "starlette/authentication.py")
    ):
        return "sdk_auth"
    if library_of(path) is not None:
        return None
    if "site-packages/" in path or path.endswith("bench_server.py"):
        return "app"
    return None


def library_of(path: str) -> str | None:
    if "/joserfc/" in path or "/cryptography/" in path or "/mcp_oidc_provider/crypto/keys.py" in path:
        return "signature check"
    if "/key_value/" in path or "beartype" in path or "/redis/" in path:
        return "store read"
    if "/pydantic/" in path or "/pydantic_core/" in path:
        return "pydantic"
    return None


#: Leaf functions where a thread waits rather than computes. py-spy's idle detection misses
#: them here (anyio's worker threads in Condition.wait, the event loop in epoll), so they are
#: dropped before the samples are scaled to the process's CPU time.
IDLE_LEAVES = ("Condition.wait (", "Event.wait (", "EpollSelector.select (", "PollSelector.select (", "Thread.join (")


def frame_path(frame: str) -> str:
    # py-spy raw frames: "function (path/to/file.py)" or "function (path/to/file.py:123)"
    inside = frame[frame.rfind("(") + 1 : -1] if frame.endswith(")") else frame
    return inside.rsplit(":", 1)[0] if inside[-1:].isdigit() else inside


def classify(frames: list[str]) -> str:
    """The component a sample's CPU counts for.

    The innermost frame that belongs to some code owner decides who caused the work: the
    application and transport (the rest), the SDK's auth middleware, our protect()/guard
    wrappers, or our own modules. Under ours or the SDK's auth code, the outermost library
    called (joserfc, py-key-value/beartype/redis, pydantic) names the component instead.
    """
    paths = [frame_path(f) for f in frames]
    for i in range(len(paths) - 1, -1, -1):
        owner = owner_of(paths[i])
        if owner is None:
            continue
        if owner == "app":
            return "the rest"
        if owner == "wrappers":
            return "protect()/guard wrappers"
        if "/mcp_oidc_provider/crypto/keys.py" in paths[i]:
            return "signature check"
        for deeper in paths[i + 1 :]:
            lib = library_of(deeper)
            if lib is not None:
                return lib
        return "our code" if owner == "ours" else "SDK auth middleware"
    return "the rest"


@dataclass
class Profile:
    label: str
    cpu_us_per_req: float
    samples: int
    by_component: dict[str, float]  # µs per request
    self_us: collections.Counter[str]  # leaf function -> µs per request, bearer path only
    total_us: collections.Counter[str]  # "caller -> component" -> µs per request, bearer path only
    profiled_cpu_us: float = 0.0  # CPU per request while py-spy sampled


def short(frame: str) -> str:
    name = frame.partition(" (")[0]
    path = frame_path(frame)
    parts = path.split("/")
    where = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({where})"


def parse_raw(label: str, raw: Path, cpu_us_per_req: float, user_share: float = 1.0) -> Profile:
    """Samples holding the GIL (Python code running) scaled to the user part of the CPU per
    request; the system part is the kernel row (socket writes, epoll), from /proc."""
    counts: collections.Counter[str] = collections.Counter()
    self_n: collections.Counter[str] = collections.Counter()
    total_n: collections.Counter[str] = collections.Counter()
    n = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        frames = [f for f in stack.split(";") if f]
        if not frames or frames[-1].startswith(IDLE_LEAVES):
            continue
        component = classify(frames)
        counts[component] += k
        n += k
        if component != "the rest":
            self_n[short(frames[-1])] += k
            # Who on the bearer path asked for the work: the innermost frame of ours, the
            # SDK's auth code or the wrappers, with the component it went to.
            caller = next(
                (f for f in reversed(frames) if owner_of(frame_path(f)) in ("ours", "sdk_auth", "wrappers")), frames[-1]
            )
            total_n[f"{short(caller)} -> {component}"] += k
    scale = cpu_us_per_req * user_share / n if n else 0.0
    by_component = {c: counts[c] * scale for c in COMPONENTS}
    by_component["kernel (syscalls)"] = cpu_us_per_req * (1 - user_share)
    return Profile(
        label,
        cpu_us_per_req,
        n,
        by_component,
        collections.Counter({k: v * scale for k, v in self_n.items()}),
        collections.Counter({k: v * scale for k, v in total_n.items()}),
    )


def find_py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if os.path.exists(found) else None


async def profile_all(
    bench: Bench, requests: int, rate: int, keep: Path | None, clean_cpu_us: dict[str, float]
) -> list[Profile]:
    """One py-spy run per server; its samples are scaled to ``clean_cpu_us[label]``, the CPU per
    request measured without a profiler attached (sampling itself costs the process CPU)."""
    py_spy = find_py_spy()
    if py_spy is None:
        print("note: py-spy not found; profile skipped (pip install py-spy)")
        return []
    out_dir = keep or Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    profiles = []
    for label, server in bench.servers.items():
        await load(server, 100, 8, 50)  # a fresh session, warm
        raw = out_dir / f"{label.replace(' ', '_').replace('(', '').replace(')', '')}.txt"
        # A blocking Popen is fine here: nothing else runs on the loop between load runs.
        spy = subprocess.Popen(  # noqa: S603, ASYNC220 - py-spy from our venv, our own child process
            [
                py_spy,
                "record",
                "--pid",
                str(server.process.pid),
                "-r",
                str(rate),
                "-f",
                "raw",
                "--nolineno",
                "--full-filenames",
                "--gil",
                "-o",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        await asyncio.sleep(0.5)  # attached
        user0, system0 = user_system_ticks(server.process.pid)
        result = await load(server, requests, 8, 20)
        user1, system1 = user_system_ticks(server.process.pid)
        spy.send_signal(signal.SIGINT)
        _, err = spy.communicate(timeout=30)
        if not raw.exists():
            print(f"note: py-spy failed on {label}: {err.decode(errors='replace')[-300:]}")
            continue
        ticks = (user1 - user0) + (system1 - system0)
        user_share = (user1 - user0) / ticks if ticks else 1.0
        profiled = parse_raw(label, raw, clean_cpu_us.get(label) or result.server_cpu_us or 0.0, user_share)
        profiled.profiled_cpu_us = result.server_cpu_us or 0.0
        profiles.append(profiled)
    if keep is None:
        shutil.rmtree(out_dir, ignore_errors=True)
    return profiles


def print_profiles(profiles: list[Profile], top: int) -> None:
    base = next((p for p in profiles if p.label == BASELINE), None)
    header = ["component (µs/req, c=8)", *(p.label for p in profiles)]
    rows = []
    for c in COMPONENTS:
        rows.append([c, *(f"{p.by_component[c]:.0f}" for p in profiles)])
    if base is not None:
        rows.append(
            [
                "the rest minus baseline",
                *(f"{p.by_component['the rest'] - base.by_component['the rest']:+.0f}" for p in profiles),
            ]
        )
        rows.append(
            [
                "auth total (sum - baseline)",
                *(f"{p.cpu_us_per_req - base.cpu_us_per_req:+.0f}" for p in profiles),
            ]
        )
    rows.append(["(CPU µs/req, rounds median)", *(f"{p.cpu_us_per_req:.0f}" for p in profiles)])
    rows.append(["(CPU µs/req under py-spy)", *(f"{p.profiled_cpu_us:.0f}" for p in profiles)])
    rows.append(["(py-spy samples)", *(str(p.samples) for p in profiles)])
    print_table(
        "3. where the server CPU goes at c=8 (py-spy shares of one run per server, scaled to the rounds' median "
        "CPU/req)",
        header,
        rows,
    )
    for p in profiles:
        if p.label == BASELINE or not p.total_us:
            continue
        print(f"\n   {p.label}: bearer path, top {top} µs/req by our/SDK caller -> component  |  by own time")
        inclusive = p.total_us.most_common(top)
        own = p.self_us.most_common(top)
        for i in range(top):
            left = f"{inclusive[i][1]:6.1f}  {inclusive[i][0]}" if i < len(inclusive) else ""
            right = f"{own[i][1]:6.1f}  {own[i][0]}" if i < len(own) else ""
            print(f"   {left[:78]:<78} | {right[:78]}")


# ---------------------------------------------------------------------------------------------
# revocation propagation (hook)


def revocation_setting() -> float | None:
    from mcp_oidc_provider import ProviderSettings

    field_info = ProviderSettings.model_fields.get("revocation_propagation_seconds")
    if field_info is None:
        return None
    return float(field_info.default)


def revocation_propagation(bench: Bench, timeout: float = 10.0) -> float | None:
    """Seconds from the authorization server's answer to /revoke until the proxy-mode MCP
    server (another process) refuses the token; None if the token is still accepted after
    ``timeout``."""
    auth, mcp = bench.auth_server, bench.servers[SETUPS[2]]
    assert auth is not None
    fresh = login(auth.base, mcp.mcp_url)
    headers = {
        "Authorization": f"Bearer {fresh.token}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "mcp-protocol-version": "2025-06-18",
    }
    with httpx2.Client(timeout=10) as http:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"},
            },
        }
        response = http.post(mcp.mcp_url, json=init, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"revocation hook: initialize -> {response.status_code}")
        if response.headers.get("mcp-session-id"):
            headers["mcp-session-id"] = response.headers["mcp-session-id"]
        # Warm: the MCP server has now seen (and may cache) this token.
        for i in range(5):
            if http.post(mcp.mcp_url, content=call_body(i + 1), headers=headers).status_code != 200:
                raise RuntimeError("revocation hook: the fresh token was refused before revocation")
        form = {"token": fresh.token, "client_id": fresh.client["client_id"]}
        form["client_secret"] = fresh.client.get("client_secret") or ""
        response = http.post(auth.base + "/revoke", data=form)
        if response.status_code != 200:
            raise RuntimeError(f"revocation hook: /revoke -> {response.status_code} {response.text[:200]}")
        revoked_at = time.perf_counter()
        while time.perf_counter() - revoked_at < timeout:
            if http.post(mcp.mcp_url, content=call_body(99), headers=headers).status_code == 401:
                return time.perf_counter() - revoked_at
            time.sleep(0.005)
    return None


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and requests (under 2 minutes)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (quick 5, full 21)")
    parser.add_argument("--requests", type=int, default=None, help="requests per cell at c=8 (quick 300, full 800)")
    parser.add_argument(
        "--profile-requests", type=int, default=None, help="requests in each py-spy run (quick 1500, full 4000)"
    )
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second (500)")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--keep-profiles", type=Path, default=None, help="keep py-spy raw stacks in this folder")
    parser.add_argument("--top", type=int, default=12, help="functions listed per setup in the profile (12)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help=f"({DEFAULT_REDIS_URL})")
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.quick else 21)
    per_cell = args.requests or (300 if args.quick else 800)
    # c=1 is latency-bound (about half the req/s): fewer requests keep the cells similar in time.
    requests = {1: max(50, per_cell // 2), 8: per_cell}
    profile_requests = args.profile_requests or (1500 if args.quick else 4000)

    why_no_redis = redis_available(args.redis_url)
    started = time.perf_counter()
    now = datetime.datetime.now().astimezone()
    load_before = os.getloadavg()
    print(
        f"bench_e2e {'quick' if args.quick else 'full'}: {now:%Y-%m-%d %H:%M %Z}, python {platform.python_version()}, "
        f"mcp {mcp_version()}, {os.cpu_count()} CPUs, load average {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}; {rounds} rounds x {requests[1]}/{requests[8]} requests at c=1/c=8"
    )
    if why_no_redis:
        print(f"note: Redis unavailable ({why_no_redis}): Redis setups skipped")
    with servers_up(args, with_redis=why_no_redis is None) as bench:
        labels = list(bench.servers)
        results = asyncio.run(measure(bench, rounds, requests, warmup=30))
        clean = {
            label: statistics.median(r.server_cpu_us for r in results[(label, 8)] if r.server_cpu_us is not None)
            for label in labels
        }
        profiles = (
            []
            if args.no_profile
            else asyncio.run(profile_all(bench, profile_requests, args.rate, args.keep_profiles, clean))
        )
        setting = revocation_setting()
        if setting is None or bench.auth_server is None:
            propagation = "n/a (no revocation_propagation_seconds setting)" if setting is None else "n/a (no Redis)"
        else:
            # Several trials: the delay depends on where in the poll interval the revocation lands.
            trials = [revocation_propagation(bench) for _ in range(5)]
            measured = sorted(t for t in trials if t is not None)
            propagation = (
                f"median {statistics.median(measured) * 1000:.0f} ms, max {measured[-1] * 1000:.0f} ms over "
                f"{len(trials)} trials (setting {setting:g} s)"
                if measured
                else "still accepted after 10 s"
            )
            if len(measured) < len(trials):
                propagation += f"; {len(trials) - len(measured)} trial(s) still accepted after 10 s"
    load_after = os.getloadavg()

    header = [
        "setup",
        *(f"throughput c={c}" for c in CONCURRENCIES),
        *(f"extra CPU µs/req c={c}" for c in CONCURRENCIES),
    ]
    print_table(
        f"1-2. tools/call whoami: ratio to the baseline and extra server CPU per request; median [p25-p75] of {rounds} "
        "interleaved rounds",
        header,
        summarize(results, labels),
    )
    if profiles:
        print_profiles(profiles, args.top)
    print(f"\n4. revocation propagation to another process (proxy mode): {propagation}")
    client = max(r.client_cpu / r.seconds for runs in results.values() for r in runs)
    print(
        f"\nclient process CPU up to {client:.0%} of one core; load average at end {load_after[0]:.2f} "
        f"{load_after[1]:.2f} {load_after[2]:.2f}; total {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
