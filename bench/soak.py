"""Soak: two auth-server replicas and one MCP server on a private Redis, restarted mid-run.

    python bench/soak.py [--duration 60] [--users 30] [--revoke 4] [--outage 3]

Starts a redis-server of its own on a free port (append-only file, fsync always, in a
temporary directory; the machine's Redis is never touched), the development IdP, two
``examples/proxy_mode/auth_server.py`` replicas behind one public URL, and
``examples/proxy_mode/mcp_server.py``. Simulated users (threads) register, log in headlessly
through the dev IdP, then loop: MCP ``initialize`` + ``tools/call whoami``, and every few
rounds a refresh at a random replica. A quarter into the run a few users are revoked with
``mcp-oidc-provider admin revoke --user`` (a separate process); halfway, Redis is stopped for
``--outage`` seconds and started again on the same files.

Printed: requests, 5xx (a 503 while Redis is down, plus a short grace, is the only acceptable
one), grants lost (a refresh refused for a user nobody revoked), revoked grants that came back
(any 200 for a revoked user), store keys and process RSS before and after. Exit 1 if anything
unacceptable happened. Not a test: nothing here runs in CI.
"""

# ruff: noqa: S311, S603, S607  (a bench script: fixed commands, non-secret randomness)

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2
import redis

from mcp_oidc_provider.run.devidp import run_dev_idp
from mcp_oidc_provider.run.headless_login import login_headlessly

ROOT = Path(__file__).resolve().parents[1]
AUTH_SERVER = ROOT / "examples" / "proxy_mode" / "auth_server.py"
MCP_SERVER = ROOT / "examples" / "proxy_mode" / "mcp_server.py"
OUTAGE_GRACE = 3.0  # seconds after Redis is back during which a 503 still counts as the outage's


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx2.HTTPError):
            if httpx2.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise TimeoutError(url)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.RedisError:  # includes "loading the dataset"
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: Redis flushes the append-only file and exits
            self.process.wait(timeout=20)
            self.process = None

    def dbsize(self) -> int:
        client = redis.Redis(port=self.port)
        try:
            return int(client.dbsize())
        finally:
            client.close()


#: The MCP server's REVOCATION_PROPAGATION_SECONDS (default 1 s) plus a margin for the request in flight.
PROPAGATION_BOUND_SECONDS = 1.5


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[tuple[float, int, str]] = field(default_factory=list)
    transport_errors: list[tuple[float, str]] = field(default_factory=list)
    grants_lost: list[str] = field(default_factory=list)
    resurrected: list[str] = field(default_factory=list)
    revoked_refusals: int = 0
    #: MCP calls a revoked grant still got within the propagation bound (the bearer cache, by design).
    served_within_propagation: int = 0
    #: 401 at /mcp for a user nobody revoked: a client would start a new login.
    unexpected_401: list[tuple[float, str]] = field(default_factory=list)
    logins: int = 0
    refreshes: int = 0
    whoami_ok: int = 0

    def record(self, kind: str, response: httpx2.Response) -> None:
        with self.lock:
            self.requests[kind] += 1
            self.statuses[response.status_code] += 1
            if response.status_code >= 500:
                self.server_errors.append((time.monotonic(), response.status_code, kind))


class Run:
    def __init__(self, public: str, replicas: list[str], mcp_url: str, stats: Stats, end: float) -> None:
        self.public = public
        self.replicas = replicas
        self.mcp_url = mcp_url
        self.stats = stats
        self.end = end
        #: Marked before the admin CLI runs (a refusal then is not a lost grant) ...
        self.revoking: set[str] = set()
        #: ... and when it returned: from then on a refresh that succeeds, or an MCP call that succeeds
        #: later than the MCP server's revocation propagation bound, is a revoked grant coming back.
        self.revoked: dict[str, float] = {}
        self.revoked_lock = threading.Lock()


def pkce() -> tuple[str, str]:
    import hashlib

    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def sse_json(response: httpx2.Response) -> Any:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:"):
                return json.loads(line[5:])
        return None
    return response.json()


def user_loop(run: Run, name: str, rng: random.Random) -> None:
    stats = run.stats
    with httpx2.Client(timeout=10) as http:

        def send(kind: str, method: str, url: str, **kwargs: Any) -> httpx2.Response | None:
            try:
                response = http.request(method, url, **kwargs)
            except httpx2.HTTPError as exc:
                with stats.lock:
                    stats.requests[kind] += 1
                    stats.transport_errors.append((time.monotonic(), f"{kind}: {type(exc).__name__}"))
                return None
            stats.record(kind, response)
            return response

        redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
        client: dict[str, Any] | None = None
        while client is None and time.monotonic() < run.end:
            response = send(
                "register",
                "POST",
                run.public + "/register",
                json={"redirect_uris": [redirect_uri], "client_name": f"soak {name}"},
            )
            if response is not None and response.status_code == 201:
                client = response.json()
            else:
                time.sleep(0.5)
        if client is None:
            return
        auth = {"client_id": client["client_id"], "client_secret": client.get("client_secret") or ""}
        tokens: dict[str, Any] | None = None
        while tokens is None and time.monotonic() < run.end:
            verifier, challenge = pkce()
            query = {
                "response_type": "code",
                "client_id": client["client_id"],
                "redirect_uri": redirect_uri,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "state": "s",
                "resource": run.mcp_url,
            }
            try:
                result = login_headlessly(f"{run.public}/authorize?{urlencode(query)}", redirect_uri, name, "login")
            except Exception as exc:  # a login that fails during the outage: try again
                with stats.lock:
                    stats.transport_errors.append((time.monotonic(), f"login: {type(exc).__name__}"))
                time.sleep(0.5)
                continue
            if "code" not in result:
                time.sleep(0.5)
                continue
            response = send(
                "token",
                "POST",
                rng.choice(run.replicas) + "/token",
                data={
                    **auth,
                    "grant_type": "authorization_code",
                    "code": result["code"],
                    "code_verifier": verifier,
                    "redirect_uri": redirect_uri,
                },
            )
            if response is not None and response.status_code == 200:
                tokens = response.json()
                with stats.lock:
                    stats.logins += 1
        if tokens is None:
            return
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        round_no = 0
        dead = False  # the grant is gone (revoked, or lost)
        while time.monotonic() < run.end:
            round_no += 1
            with run.revoked_lock:
                revoked_at = run.revoked.get(name)
            revoked = revoked_at is not None
            bearer = {**headers, "Authorization": f"Bearer {tokens['access_token']}"}
            init = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "soak", "version": "0"},
                },
            }
            response = send("mcp", "POST", run.mcp_url, json=init, headers=bearer)
            if response is not None and response.status_code == 200:
                session = response.headers.get("mcp-session-id")
                extra = {"mcp-session-id": session} if session else {}
                send(
                    "mcp",
                    "POST",
                    run.mcp_url,
                    headers={**bearer, **extra},
                    json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                )
                call = send(
                    "mcp",
                    "POST",
                    run.mcp_url,
                    headers={**bearer, **extra},
                    json={
                        "jsonrpc": "2.0",
                        "id": 2,
                        "method": "tools/call",
                        "params": {"name": "whoami", "arguments": {}},
                    },
                )
                if call is not None and call.status_code == 200:
                    body = sse_json(call)
                    who = json.loads(body["result"]["content"][0]["text"]) if body else {}
                    if who.get("sub") == name:
                        with stats.lock:
                            stats.whoami_ok += 1
                if revoked_at is not None:
                    with stats.lock:
                        if time.monotonic() - revoked_at > PROPAGATION_BOUND_SECONDS:
                            stats.resurrected.append(f"{name}: /mcp 200 after revocation")
                        else:
                            stats.served_within_propagation += 1
            elif response is not None and response.status_code == 401:
                with run.revoked_lock:
                    revoking = name in run.revoking
                with stats.lock:
                    if revoking:
                        stats.revoked_refusals += 1
                    else:
                        stats.unexpected_401.append((time.monotonic(), name))
            if round_no % 6 == 0 and not dead:
                response = send(
                    "refresh",
                    "POST",
                    rng.choice(run.replicas) + "/token",
                    data={**auth, "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                )
                if response is not None and response.status_code == 200:
                    if revoked:
                        with stats.lock:
                            stats.resurrected.append(f"{name}: refresh 200 after revocation")
                    tokens = response.json()
                    with stats.lock:
                        stats.refreshes += 1
                elif response is not None and "Too many refreshes" in response.text:
                    pass  # the per-grant refresh rate limit: retry later with the same token
                elif response is not None and response.status_code in (400, 401):
                    with run.revoked_lock:
                        revoking = name in run.revoking
                    if not revoking:
                        with stats.lock:
                            stats.grants_lost.append(f"{name}: {response.status_code} {response.text[:120]}")
                    dead = True
            elif dead and revoked and round_no % 6 == 0:
                # Keep presenting the dead refresh token: it must stay refused, outage or not.
                response = send(
                    "refresh",
                    "POST",
                    rng.choice(run.replicas) + "/token",
                    data={**auth, "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                )
                if response is not None and response.status_code == 200:
                    with stats.lock:
                        stats.resurrected.append(f"{name}: dead refresh token accepted")
            time.sleep(rng.uniform(0.05, 0.25))


@contextlib.contextmanager
def process(script: Path, env: dict[str, str], health: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    handle = open(log, "wb")
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_up(health)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        handle.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--revoke", type=int, default=4, help="users revoked on purpose through admin")
    parser.add_argument("--outage", type=float, default=3.0, help="seconds Redis stays down mid-run")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the dev IdP's access log
    workdir = Path(tempfile.mkdtemp(prefix="mcp-oidc-soak-"))
    store = PrivateRedis(workdir)
    store.start()
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    mcp_port, port_a, port_b = free_port(), free_port(), free_port()
    public = f"http://127.0.0.1:{port_a}"
    mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
    stats = Stats()
    try:
        with contextlib.ExitStack() as stack:
            idp = stack.enter_context(run_dev_idp())
            common = {
                "STORE_URL": store.url,
                "SECRET_KEY": secret,
                "UPSTREAM_ISSUER": idp,
                "UPSTREAM_CLIENT_ID": "mcp-oidc-provider-dev",
                "RESOURCE_URLS": mcp_url,
                "BASE_URL": public,
                # Every simulated user comes from 127.0.0.1: per-IP budgets would be one for all.
                "RATE_LIMIT_PER_MINUTE": "100000",
                "REGISTER_RATE_LIMIT_PER_MINUTE": "100000",
            }
            from mcp_oidc_provider.run.devidp import DEV_CLIENT_ID, DEV_CLIENT_SECRET

            common.update(UPSTREAM_CLIENT_ID=DEV_CLIENT_ID, UPSTREAM_CLIENT_SECRET=DEV_CLIENT_SECRET)
            procs = {
                "auth-a": stack.enter_context(
                    process(
                        AUTH_SERVER,
                        {**common, "PORT": str(port_a)},
                        f"http://127.0.0.1:{port_a}/health",
                        workdir / "auth-a.log",
                    )
                ),
                "auth-b": stack.enter_context(
                    process(
                        AUTH_SERVER,
                        {**common, "PORT": str(port_b)},
                        f"http://127.0.0.1:{port_b}/health",
                        workdir / "auth-b.log",
                    )
                ),
            }
            procs["mcp"] = stack.enter_context(
                process(
                    MCP_SERVER,
                    {"PORT": str(mcp_port), "AUTH_ISSUER": public, "STORE_URL": store.url, "SECRET_KEY": secret},
                    f"http://127.0.0.1:{mcp_port}/.well-known/oauth-protected-resource/mcp",
                    workdir / "mcp.log",
                )
            )
            keys_before = store.dbsize()
            rss_before = {name: rss_kib(p.pid) for name, p in procs.items()}
            start = time.monotonic()
            run = Run(public, [public, f"http://127.0.0.1:{port_b}"], mcp_url, stats, start + args.duration)
            names = [f"user{i:02d}" for i in range(args.users)]
            threads = [threading.Thread(target=user_loop, args=(run, n, random.Random(n)), daemon=True) for n in names]
            for thread in threads:
                thread.start()
                time.sleep(0.05)

            time.sleep(max(0.0, start + args.duration * 0.25 - time.monotonic()))
            victims = random.Random(0).sample(names, min(args.revoke, len(names)))
            with run.revoked_lock:
                run.revoking.update(victims)
            revoked_grants = 0
            for victim in victims:
                result = subprocess.run(
                    [sys.executable, "-m", "mcp_oidc_provider.run.cli", "admin", "revoke", "--user", victim, "--json"],
                    env={**os.environ, **common},
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                if result.returncode != 0:
                    print(f"admin revoke {victim} failed: {result.stderr.strip()}", file=sys.stderr)
                    continue
                revoked_grants += len(json.loads(result.stdout)["revoked"])
                with run.revoked_lock:
                    run.revoked[victim] = time.monotonic()
            keys_mid = store.dbsize()

            time.sleep(max(0.0, start + args.duration * 0.5 - time.monotonic()))
            outage_start = time.monotonic()
            store.stop()
            time.sleep(args.outage)
            store.start()
            outage_end = time.monotonic()

            for thread in threads:
                thread.join(timeout=args.duration + 60)
            elapsed = time.monotonic() - start
            keys_after = store.dbsize()
            rss_after = {name: rss_kib(p.pid) for name, p in procs.items()}
    finally:
        store.stop()
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)

    outage_window = (outage_start, outage_end + OUTAGE_GRACE)
    acceptable = [e for e in stats.server_errors if e[1] == 503 and outage_window[0] <= e[0] <= outage_window[1]]
    unacceptable = [e for e in stats.server_errors if e not in acceptable]
    transport_outside = [e for e in stats.transport_errors if not outage_window[0] <= e[0] <= outage_window[1]]
    total = sum(stats.requests.values())
    print(
        f"soak: {args.users} users, {elapsed:.0f} s, Redis down {outage_end - outage_start:.1f} s at "
        f"{outage_start - start:.0f} s; logs in {workdir if args.keep_logs else '(removed)'}"
    )
    print(
        f"requests              {total} ({', '.join(f'{k} {v}' for k, v in sorted(stats.requests.items()))}); "
        f"{total / elapsed:.0f}/s"
    )
    print(f"statuses              {dict(sorted(stats.statuses.items()))}")
    print(
        f"logins / refreshes    {stats.logins} / {stats.refreshes}; whoami answered as the right user "
        f"{stats.whoami_ok} times"
    )
    print(
        f"5xx                   {len(stats.server_errors)} (503 during the outage: {len(acceptable)}; "
        f"other: {len(unacceptable)} {Counter((c, k) for _, c, k in unacceptable).most_common(5)})"
    )
    print(f"transport errors      {len(stats.transport_errors)} (outside the outage: {len(transport_outside)})")
    print(f"grants lost           {len(stats.grants_lost)} {stats.grants_lost[:5]}")
    in_outage = sum(outage_window[0] <= t <= outage_window[1] for t, _ in stats.unexpected_401)
    print(
        f"401 for live users    {len(stats.unexpected_401)} (during the outage: {in_outage}; by user: "
        f"{Counter(n for _, n in stats.unexpected_401).most_common(6)}; first at "
        f"{[round(t - start, 1) for t, _ in stats.unexpected_401[:6]]} s)"
    )
    print(
        f"revoked users         {len(victims)} ({revoked_grants} grants); refusals seen after revocation "
        f"{stats.revoked_refusals}; served within the {PROPAGATION_BOUND_SECONDS} s propagation bound "
        f"{stats.served_within_propagation}; came back: {len(stats.resurrected)} {stats.resurrected[:5]}"
    )
    print(f"store keys            before {keys_before}, after revocations {keys_mid}, after {keys_after}")
    for name in rss_before:
        print(f"RSS {name:<17} before {rss_before[name] / 1024:.1f} MiB, after {rss_after[name] / 1024:.1f} MiB")
    ok = (
        not unacceptable
        and not stats.unexpected_401
        and not stats.grants_lost
        and not stats.resurrected
        and not transport_outside
    )
    print("RESULT                " + ("ok" if ok else "PROBLEMS"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
