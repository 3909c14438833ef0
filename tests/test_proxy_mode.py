"""Proxy mode: the authorization server and the MCP server as separate processes sharing Redis."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2
import pytest
import redis
from client import MemoryTokenStorage, call_whoami
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from support.harness import Client, Harness, pkce, token_form
from support.net import EXAMPLES, free_port, run_process, wait_until_up

from mcp_oidc_provider import generate_jwks
from mcp_oidc_provider.run.devidp import DEV_CLIENT_ID, DEV_CLIENT_SECRET

REDIS_DB = 12
AUTH_SERVER = EXAMPLES / "proxy_mode" / "auth_server.py"
MCP_SERVER = EXAMPLES / "proxy_mode" / "mcp_server.py"


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A database of the machine's Redis of our own, emptied before and after."""
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    yield f"redis://127.0.0.1:6379/{REDIS_DB}"
    client.flushdb()
    client.close()


@contextlib.contextmanager
def auth_server(
    tmp: Path, idp: str, store_url: str, resources: str, port: int | None = None, base: str | None = None, **env: str
) -> Iterator[str]:
    port = port or free_port()
    base = base or f"http://127.0.0.1:{port}"
    environ = {
        "PORT": str(port),
        "BASE_URL": base,
        "UPSTREAM_ISSUER": idp,
        "UPSTREAM_CLIENT_ID": DEV_CLIENT_ID,
        "UPSTREAM_CLIENT_SECRET": DEV_CLIENT_SECRET,
        "STORE_URL": store_url,
        "RESOURCE_URLS": resources,
        **env,
    }
    with run_process(AUTH_SERVER, environ, f"http://127.0.0.1:{port}/health", tmp / f"auth-{port}.log"):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def mcp_server(tmp: Path, issuer: str, store_url: str, port: int) -> Iterator[str]:
    environ = {"PORT": str(port), "AUTH_ISSUER": issuer, "STORE_URL": store_url}
    with run_process(
        MCP_SERVER,
        environ,
        f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp",
        tmp / f"mcp-{port}.log",
    ):
        yield f"http://127.0.0.1:{port}/mcp"


@contextlib.asynccontextmanager
async def raw(auth_base: str, mcp_url: str) -> AsyncIterator[Harness]:
    async with httpx2.AsyncClient(timeout=15) as http:
        yield Harness(base=auth_base, provider=None, store=None, http=http, resource=mcp_url)


#: The MCP server's default revocation_propagation_seconds, and what a test allows on top for
#: one request's round trip on a loaded 2-CPU machine.
PROPAGATION_SECONDS = 1.0
SLACK_SECONDS = 0.5


async def answered_within(h: Harness, token: str, status: int, limit: float) -> float:
    """Seconds until the MCP server answers ``status`` to ``token`` (polling); fails past ``limit``."""
    started = time.perf_counter()
    while True:
        response = await h.mcp(token)
        elapsed = time.perf_counter() - started
        if response.status_code == status:
            if status == 401:
                assert response.headers["www-authenticate"].startswith("Bearer")
            return elapsed
        assert elapsed < limit, f"still {response.status_code} after {elapsed:.2f} s"
        await anyio.sleep(0.01)


def with_netloc(url: str, base: str) -> str:
    return urlunsplit(urlsplit(url)._replace(netloc=urlsplit(base).netloc))


async def test_a_user_logs_in_at_the_auth_server_and_calls_the_mcp_server_and_revocation_is_seen_within_a_second(
    tmp_path: Path, dev_idp: str, redis_url: str
) -> None:
    mcp_port = free_port()
    resource = f"http://127.0.0.1:{mcp_port}/mcp"
    with (
        auth_server(tmp_path, dev_idp, redis_url, resource) as issuer,
        mcp_server(tmp_path, issuer, redis_url, mcp_port) as mcp_url,
    ):
        storage = MemoryTokenStorage()
        identity = await call_whoami(mcp_url, headless=True, user="alice", storage=storage)
        assert identity["sub"] == "alice"
        assert identity["claims"]["email"] == "alice@example.test"
        assert identity["resource"] == resource
        assert storage.tokens is not None

        async with httpx2.AsyncClient() as http:
            refreshed = await http.post(
                issuer + "/token",
                data=token_form(storage, grant_type="refresh_token", refresh_token=storage.tokens.refresh_token or ""),
            )
            assert refreshed.status_code == 200, refreshed.text
            access = refreshed.json()["access_token"]
            async with raw(issuer, mcp_url) as h:
                assert (await h.mcp(access)).status_code == 200

                revoked = await http.post(issuer + "/revoke", data=token_form(storage, token=access))
                assert revoked.status_code == 200
                # issue 12: the MCP server answers from its bearer cache and polls the store's
                # revocation epoch at most once per revocation_propagation_seconds (1 s).
                delay = await answered_within(h, access, 401, PROPAGATION_SECONDS + SLACK_SECONDS)
            print(f"\nrevocation seen by the MCP server (another process) after {delay * 1000:.0f} ms")


async def test_a_login_started_on_one_replica_finishes_on_the_other_and_its_token_verifies_anywhere(
    tmp_path: Path, dev_idp: str, redis_url: str
) -> None:
    mcp_port = free_port()
    resource = f"http://127.0.0.1:{mcp_port}/mcp"
    port_a, port_b = free_port(), free_port()
    public = f"http://127.0.0.1:{port_a}"  # both replicas answer for one public URL
    with (
        auth_server(tmp_path, dev_idp, redis_url, resource, port=port_a, base=public) as replica_a,
        auth_server(tmp_path, dev_idp, redis_url, resource, port=port_b, base=public) as replica_b,
        mcp_server(tmp_path, replica_a, redis_url, mcp_port) as mcp_url,
    ):
        async with raw(replica_a, mcp_url) as a, raw(replica_b, mcp_url) as b:
            client = await a.register()
            verifier, challenge = pkce()
            # Started on A: /authorize, then the IdP; the load balancer sends the callback to B.
            async with httpx2.AsyncClient() as browser:
                upstream_url = await a.to_upstream(browser, client, challenge)
                at_idp = await browser.post(upstream_url, data={"sub": "alice"})
                callback = at_idp.headers["location"]
                assert callback.startswith(public + "/oauth/callback")
                at_b = await browser.get(with_netloc(callback, replica_b))
            assert at_b.status_code == 302, at_b.text
            query = dict(__import__("urllib.parse").parse.parse_qsl(urlsplit(at_b.headers["location"]).query))
            tokens = await b.redeem(client, query["code"], verifier)
            assert tokens.status_code == 200, tokens.text
            # Minted by B; the MCP server was only ever pointed at A.
            assert (await b.mcp(tokens.json()["access_token"])).status_code == 200
            # And the other way round: a refresh at A of B's refresh token.
            refreshed = await a.token(client, grant_type="refresh_token", refresh_token=tokens.json()["refresh_token"])
            assert refreshed.status_code == 200
            assert (await a.mcp(refreshed.json()["access_token"])).status_code == 200


async def test_restarting_the_auth_server_keeps_access_and_refresh_tokens_working(
    tmp_path: Path, dev_idp: str, redis_url: str
) -> None:
    mcp_port, as_port = free_port(), free_port()
    resource = f"http://127.0.0.1:{mcp_port}/mcp"
    with auth_server(tmp_path, dev_idp, redis_url, resource, port=as_port) as issuer:
        async with raw(issuer, resource) as h:
            client, tokens = await h.login_and_redeem()
            kid_before = (await h.http.get(issuer + "/jwks")).json()["keys"][0]["kid"]
    with (
        auth_server(tmp_path, dev_idp, redis_url, resource, port=as_port) as issuer,
        mcp_server(tmp_path, issuer, redis_url, mcp_port) as mcp_url,
    ):
        async with raw(issuer, mcp_url) as h:
            assert (await h.http.get(issuer + "/jwks")).json()["keys"][0]["kid"] == kid_before
            assert (await h.mcp(tokens["access_token"])).status_code == 200
            refreshed = await h.token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
            assert refreshed.status_code == 200, refreshed.text
            assert (await h.mcp(refreshed.json()["access_token"])).status_code == 200


def test_the_auth_server_exits_cleanly_on_sigterm(dev_idp: str) -> None:
    port = free_port()
    environ = {
        **os.environ,
        "PORT": str(port),
        "UPSTREAM_ISSUER": dev_idp,
        "UPSTREAM_CLIENT_ID": DEV_CLIENT_ID,
        "UPSTREAM_CLIENT_SECRET": DEV_CLIENT_SECRET,
    }
    process = subprocess.Popen(
        [sys.executable, str(AUTH_SERVER)], env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert "Traceback" not in (process.stderr.read() if process.stderr else "")
    finally:
        if process.poll() is None:
            process.kill()


# Redis going away under a running MCP server


@contextlib.contextmanager
def private_redis(tmp: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of the test's own, persisting every write, so it can stop and come back."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_with_redis_down_the_mcp_server_fails_closed_with_503_and_recovers_by_itself(
    tmp_path: Path, dev_idp: str
) -> None:
    redis_port, mcp_port = free_port(), free_port()
    store_url = f"redis://127.0.0.1:{redis_port}/0"
    resource = f"http://127.0.0.1:{mcp_port}/mcp"
    with private_redis(tmp_path, redis_port) as first_redis:
        stack = contextlib.ExitStack()
        issuer = stack.enter_context(auth_server(tmp_path, dev_idp, store_url, resource))
        mcp_url = stack.enter_context(mcp_server(tmp_path, issuer, store_url, mcp_port))
        with stack:
            async with raw(issuer, mcp_url) as h:
                _, tokens = await h.login_and_redeem()
                assert (await h.mcp(tokens["access_token"])).status_code == 200

                first_redis.terminate()
                first_redis.wait(timeout=10)
                # Within the propagation interval the bearer cache may still answer; after it
                # the epoch read fails and the server fails closed.
                await answered_within(h, tokens["access_token"], 503, PROPAGATION_SECONDS + SLACK_SECONDS + 5)
                down = await h.mcp(tokens["access_token"])
                assert down.status_code == 503
                assert down.json()["error"] == "temporarily_unavailable"
                assert down.headers["retry-after"]
                assert "Traceback" not in down.text
                # The auth server also answers with an OAuth error, not a 500.
                token_down = await h.token(
                    Client(client_id="x", client_secret=None, redirect_uri="http://127.0.0.1:1/cb"),
                    grant_type="refresh_token",
                    refresh_token=tokens["refresh_token"],
                )
                assert token_down.status_code == 503
                assert token_down.json()["error"] == "temporarily_unavailable"

                with private_redis(tmp_path, redis_port):
                    back = await h.mcp(tokens["access_token"])
                    assert back.status_code == 200, back.text


# Tokens the MCP server must refuse


@pytest.fixture
def signing_jwks() -> dict[str, Any]:
    return generate_jwks("RS256")


async def test_the_mcp_server_refuses_foreign_expired_misdirected_and_revoked_tokens(
    tmp_path: Path, dev_idp: str, redis_url: str, signing_jwks: dict[str, Any]
) -> None:
    mcp_port = free_port()
    resource = f"http://127.0.0.1:{mcp_port}/mcp"
    other_resource = f"http://127.0.0.1:{free_port()}/mcp"
    with (
        auth_server(
            tmp_path, dev_idp, redis_url, f"{resource},{other_resource}", JWKS=json.dumps(signing_jwks)
        ) as issuer,
        mcp_server(tmp_path, issuer, redis_url, mcp_port) as mcp_url,
    ):
        async with raw(issuer, mcp_url) as h:
            client, tokens = await h.login_and_redeem()
            good = tokens["access_token"]
            assert (await h.mcp(good)).status_code == 200
            claims = json.loads(__import__("base64").urlsafe_b64decode(good.split(".")[1] + "=="))
            our_key = KeySet.import_key_set(signing_jwks).keys[0]
            stranger = RSAKey.generate_key(2048, parameters={"alg": "RS256", "kid": our_key.kid})

            def sign(key: Any, typ: str = "at+jwt", **changes: Any) -> str:
                return jwt.encode({"alg": "RS256", "kid": our_key.kid, "typ": typ}, {**claims, **changes}, key)

            now = int(time.time())
            refused = {
                "id token": sign(our_key, typ="JWT", aud=client.client_id, nonce="n"),
                "unknown key": sign(stranger),
                "expired": sign(our_key, iat=now - 7200, nbf=now - 7200, exp=now - 3600),
                "other resource": sign(our_key, aud=other_resource),
                "other issuer": sign(our_key, iss="https://evil.example"),
            }
            # A real token for the other resource, from a real login.
            h.resource = other_resource
            _, for_other = await h.login_and_redeem(client)
            h.resource = mcp_url
            refused["issued for another resource"] = for_other["access_token"]
            for name, token in refused.items():
                response = await h.mcp(token)
                assert response.status_code == 401, name
                assert response.headers["www-authenticate"].startswith("Bearer"), name

            # The genuine token still works until its grant is revoked.
            assert (await h.mcp(good)).status_code == 200
            await h.http.post(
                issuer + "/revoke",
                data={"client_id": client.client_id, "client_secret": client.client_secret or "", "token": good},
            )
            await answered_within(h, good, 401, PROPAGATION_SECONDS + SLACK_SECONDS)


async def test_grants_revoked_at_the_auth_server_under_load_never_survive_at_the_mcp_server_past_a_second(
    tmp_path: Path, dev_idp: str, redis_url: str
) -> None:
    """Issue 12 §1: for each trial, a client hammers the MCP server (another process, bearer
    cache warm) while the grant is revoked at the authorization server; the first 401 must come
    within the propagation interval and no 200 may follow it."""
    trials, delays, survivors = 8, [], 0
    mcp_port = free_port()
    resource = f"http://127.0.0.1:{mcp_port}/mcp"
    with (
        auth_server(tmp_path, dev_idp, redis_url, resource) as issuer,
        mcp_server(tmp_path, issuer, redis_url, mcp_port) as mcp_url,
    ):
        async with raw(issuer, mcp_url) as h:
            for _ in range(trials):
                client, tokens = await h.login_and_redeem()
                token = tokens["access_token"]
                assert (await h.mcp(token)).status_code == 200
                statuses: list[tuple[float, int]] = []
                done = anyio.Event()

                async def hammer(
                    token: str = token, statuses: list[tuple[float, int]] = statuses, done: anyio.Event = done
                ) -> None:
                    while not done.is_set():
                        statuses.append((time.perf_counter(), (await h.mcp(token)).status_code))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(hammer)
                    await anyio.sleep(0.05)
                    revoked = await h.http.post(
                        issuer + "/revoke",
                        data={
                            "client_id": client.client_id,
                            "client_secret": client.client_secret or "",
                            "token": token,
                        },
                    )
                    assert revoked.status_code == 200
                    revoked_at = time.perf_counter()
                    await anyio.sleep(PROPAGATION_SECONDS + SLACK_SECONDS)
                    done.set()
                after = [(t - revoked_at, s) for t, s in statuses if t > revoked_at]
                first_refusal = next((t for t, s in after if s == 401), None)
                if first_refusal is None or any(s == 200 for t, s in after if t > first_refusal):
                    survivors += 1
                    continue
                delays.append(first_refusal)
    print(
        f"\n{trials} revocation trials under load: {survivors} grants survived; delay until refused "
        f"median {statistics.median(delays) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms"
    )
    assert survivors == 0
    assert max(delays) < PROPAGATION_SECONDS + SLACK_SECONDS
