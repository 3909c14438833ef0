"""Revoked stays revoked (issue 8 §1): races between refreshes and revocations, in two
authorization-server processes sharing Redis, many trials each; every trial counts the grants
that survive (must be 0) and the counts are printed (`pytest -s`).

Grants are written straight into the shared store (what a completed login leaves there), so
each trial costs milliseconds; everything under test goes over real HTTP to the two processes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx2
import pytest
import redis.asyncio as aioredis
from key_value.aio.wrappers.prefix_collections import PrefixCollectionsWrapper
from starlette.requests import Request
from starlette.responses import Response
from support.harness import pkce
from support.hostile_idp import HostileIdP
from support.net import free_port, run_process, serve_in_loop

from mcp_oidc_provider import SystemClock, UpstreamSettings, generate_jwks, store_from_url
from mcp_oidc_provider.core.models import FederatedAccessToken, UpstreamTokens
from mcp_oidc_provider.crypto.minting import new_code, new_grant_id, new_refresh_token
from mcp_oidc_provider.crypto.sealing import Sealer
from mcp_oidc_provider.store.records import CodeRecord, GrantRecord, RefreshTokenRecord, SpentMarker
from mcp_oidc_provider.store.repository import Repository
from mcp_oidc_provider.upstream.client import UpstreamClient
from mcp_oidc_provider.upstream.vault import UpstreamTokenService

REDIS_URL = "redis://127.0.0.1:6379/10"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SERVER = Path(__file__).resolve().parent / "support" / "lifecycle_server.py"
TRIALS = 50
RACERS = 6  # concurrent refreshers (or redeemers) per trial, split between the two processes
SLOW_REFRESH_SECONDS = 2.0


class SlowRefreshIdP(HostileIdP):
    """The scriptable IdP, whose refresh grant takes ``refresh_delay`` seconds."""

    refresh_delay = 0.0

    async def token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") == "refresh_token" and self.refresh_delay:
            await anyio.sleep(self.refresh_delay)
        return await super().token(request)


@dataclass
class Deployment:
    bases: list[str]
    resource: str
    repo: Repository
    client_id: str
    client_secret: str
    redirect_uri: str
    idp: SlowRefreshIdP
    http: httpx2.AsyncClient
    upstream_settings: UpstreamSettings

    def base(self, i: int) -> str:
        return self.bases[i % len(self.bases)]

    def form(self, **fields: str) -> dict[str, str]:
        return {"client_id": self.client_id, "client_secret": self.client_secret, **fields}

    async def refresh(self, i: int, token: str) -> httpx2.Response:
        return await self.http.post(
            self.base(i) + "/token", data=self.form(grant_type="refresh_token", refresh_token=token)
        )

    async def revoke(self, i: int, token: str) -> httpx2.Response:
        return await self.http.post(self.base(i) + "/revoke", data=self.form(token=token))

    async def new_grant(self, *, upstream: UpstreamTokens | None = None, checked_at: float | None = None) -> str:
        now = time.time()
        grant = GrantRecord(
            grant_id=new_grant_id(),
            client_id=self.client_id,
            subject="alice",
            scopes=["mcp"],
            resource=self.resource,
            claims={"email": "alice@example.test"},
            upstream=upstream,
            created_at=now,
            expires_at=now + 3600,
        )
        assert await self.repo.save_grant(grant, 3600, upstream_checked_at=checked_at)
        return grant.grant_id

    async def new_refresh_token(self, grant_id: str, *, spent_seconds_ago: float | None = None) -> str:
        token = new_refresh_token()
        now = time.time()
        if spent_seconds_ago is not None:  # a token the grant already rotated away
            await self.repo.mark_refresh_token_spent(
                token, SpentMarker(grant_id=grant_id, spent_at=now - spent_seconds_ago), 3600
            )
            return token
        record = RefreshTokenRecord(
            grant_id=grant_id,
            client_id=self.client_id,
            subject="alice",
            scopes=["mcp"],
            resource=self.resource,
            expires_at=int(now + 3600),
        )
        assert await self.repo.save_refresh_token(token, record, 3600)
        return token

    async def survived(self, grant_id: str, refresh_tokens: list[str]) -> bool:
        """Anything of the grant still there: its record, or a refresh token that still refreshes."""
        if await self.repo.grant_record_exists(grant_id) or await self.repo.load_upstream(grant_id) is not None:
            return True
        for i, token in enumerate(refresh_tokens):
            if (await self.refresh(i, token)).status_code == 200:
                return True
        return False


@pytest.fixture(scope="module")
def redis_prefix() -> Iterator[str]:
    prefix = f"test-grant-races-{uuid.uuid4().hex[:12]}"
    yield prefix

    async def clean() -> None:
        raw = aioredis.Redis.from_url(REDIS_URL)
        async for key in raw.scan_iter(match=f"{prefix}__*"):
            await raw.delete(key)
        await raw.aclose()

    anyio.run(clean)


@pytest.fixture(scope="module", params=["redis", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Issue 10 §3: the revocation of issue 8 §1 holds on every shared backend."""
    if request.param == "redis":
        yield REDIS_URL
        return
    table = f"mcp_oidc_races_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_URL}?table={table}"

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        await conn.close()

    anyio.run(drop)


@pytest.fixture(scope="module")
async def deployment(
    tmp_path_factory: pytest.TempPathFactory, redis_prefix: str, store_url: str
) -> AsyncIterator[Deployment]:
    idp = SlowRefreshIdP()
    idp_port = free_port()
    idp.issuer = f"http://127.0.0.1:{idp_port}"
    secret_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    ports = [free_port(), free_port()]
    issuer = f"http://127.0.0.1:{ports[0]}"
    resource = f"http://127.0.0.1:{free_port()}/mcp"
    tmp = tmp_path_factory.mktemp("races")
    env = {
        "ROLE": "auth",
        "BASE_URL": issuer,  # both processes are one deployment behind one issuer
        "UPSTREAM_ISSUER": idp.issuer,
        "UPSTREAM_CLIENT_ID": idp.client_id,
        "UPSTREAM_CLIENT_SECRET": "hostile-secret",
        "STORE_URL": store_url,
        "COLLECTION_PREFIX": redis_prefix,
        "RESOURCE_URLS": resource,
        "JWKS": json.dumps(generate_jwks()),
        "SECRET_KEY": secret_key,
        # No rate limit here: the races need as many refreshes as they can get; re-check the
        # upstream session on every refresh of a grant that has upstream tokens.
        "PROVIDER_OVERRIDES": json.dumps({"refresh_rate_limit_per_minute": 0, "upstream_recheck_seconds": 1}),
    }
    store = PrefixCollectionsWrapper(store_from_url(store_url), redis_prefix)
    repo = Repository(store)
    repo.sealer = Sealer.derived(base64.urlsafe_b64decode(secret_key + "=" * (-len(secret_key) % 4)))
    async with serve_in_loop(idp.app(), idp_port), contextlib.AsyncExitStack() as stack:
        for port in ports:
            # In a thread: the process discovers the IdP this event loop serves while we wait.
            process = run_process(
                SERVER, {**env, "PORT": str(port)}, f"http://127.0.0.1:{port}/health", tmp / f"as-{port}.log"
            )
            await anyio.to_thread.run_sync(stack.enter_context, process)
        limits = httpx2.Limits(max_connections=200, max_keepalive_connections=50)
        http = await stack.enter_async_context(httpx2.AsyncClient(timeout=30, limits=limits))
        redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
        registered = await http.post(
            issuer + "/register", json={"redirect_uris": [redirect_uri], "client_name": "racer"}
        )
        assert registered.status_code == 201, registered.text
        body = registered.json()
        yield Deployment(
            bases=[f"http://127.0.0.1:{p}" for p in ports],
            resource=resource,
            repo=repo,
            client_id=body["client_id"],
            client_secret=body["client_secret"],
            redirect_uri=redirect_uri,
            idp=idp,
            http=http,
            upstream_settings=UpstreamSettings(
                issuer=idp.issuer, client_id=idp.client_id, client_secret="hostile-secret"
            ),
        )


async def refresh_loop(d: Deployment, i: int, token: str, seen: list[str]) -> None:
    """A client (or a thief) refreshing as fast as it can until refused."""
    for _ in range(200):
        response = await d.refresh(i, token)
        if response.status_code != 200:
            return
        token = response.json()["refresh_token"]
        seen.append(token)


REFRESHES_DURING_RACES: dict[str, int] = {}


async def race(d: Deployment, grant_id: str, start_token: str, strike: Any, name: str) -> bool:
    """RACERS refresh loops on ``start_token`` across both processes, and ``strike`` (the
    revocation) after a random 0-150 ms; True if the grant survived."""
    seen = [start_token]
    async with anyio.create_task_group() as tg:
        for i in range(RACERS):
            tg.start_soon(refresh_loop, d, i, start_token, seen)

        async def delayed() -> None:
            await anyio.sleep(random.uniform(0, 0.15))
            await strike()

        tg.start_soon(delayed)
    REFRESHES_DURING_RACES[name] = REFRESHES_DURING_RACES.get(name, 0) + len(seen) - 1
    return await d.survived(grant_id, seen[-RACERS:])


def report(name: str, trials: int, survivors: int, extra: str = "", racers: int = RACERS) -> None:
    print(f"\n[issue 8 §1] {name}: {trials} trials, {racers} racers each, {survivors} grants survived {extra}")


async def test_concurrent_refreshers_in_two_processes_never_outlive_a_revoke_at_the_revocation_endpoint(
    deployment: Deployment,
) -> None:
    d = deployment
    survivors = 0
    for trial in range(TRIALS):
        grant_id = await d.new_grant()
        racing, revoking = await d.new_refresh_token(grant_id), await d.new_refresh_token(grant_id)

        async def strike(trial: int = trial, revoking: str = revoking) -> None:
            assert (await d.revoke(trial, revoking)).status_code == 200  # RFC 7009 §2.2

        survivors += await race(d, grant_id, racing, strike, "revoke")
    report("refreshers vs /revoke", TRIALS, survivors, f"({REFRESHES_DURING_RACES['revoke']} refreshes succeeded)")
    assert survivors == 0


async def test_concurrent_refreshers_in_two_processes_never_outlive_reuse_detection(deployment: Deployment) -> None:
    d = deployment
    survivors = 0
    for trial in range(TRIALS):
        grant_id = await d.new_grant()
        racing = await d.new_refresh_token(grant_id)
        # A refresh token rotated away 10 s ago (past the 2 s grace): presenting it is theft.
        stolen = await d.new_refresh_token(grant_id, spent_seconds_ago=10)

        async def strike(trial: int = trial, stolen: str = stolen) -> None:
            response = await d.refresh(trial, stolen)
            assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")  # RFC 9700 §4.14.2

        survivors += await race(d, grant_id, racing, strike, "reuse")
    report(
        "refreshers vs reuse detection", TRIALS, survivors, f"({REFRESHES_DURING_RACES['reuse']} refreshes succeeded)"
    )
    assert survivors == 0


async def test_concurrent_redemptions_of_one_code_in_two_processes_leave_no_grant_alive(deployment: Deployment) -> None:
    d = deployment
    survivors = winners = 0
    for _ in range(TRIALS):
        verifier, challenge = pkce()
        now = time.time()
        grant = GrantRecord(
            grant_id=new_grant_id(),
            client_id=d.client_id,
            subject="alice",
            scopes=["mcp"],
            resource=d.resource,
            created_at=now,
        )
        await d.repo.save_grant(grant, 65)
        code = new_code()
        await d.repo.save_code(
            code,
            CodeRecord(
                grant_id=grant.grant_id,
                client_id=d.client_id,
                subject="alice",
                scopes=["mcp"],
                resource=d.resource,
                code_challenge=challenge,
                redirect_uri=d.redirect_uri,
                redirect_uri_provided_explicitly=True,
                expires_at=now + 60,
            ),
            60,
        )
        issued: list[str] = []

        async def redeem(i: int, code: str = code, verifier: str = verifier, issued: list[str] = issued) -> None:
            await anyio.sleep(random.uniform(0, 0.05) if i else 0)
            response = await d.http.post(
                d.base(i) + "/token",
                data=d.form(
                    grant_type="authorization_code", code=code, code_verifier=verifier, redirect_uri=d.redirect_uri
                ),
            )
            if response.status_code == 200:
                issued.append(response.json()["refresh_token"])
                await refresh_loop(d, i, issued[-1], issued)
            else:
                assert response.json()["error"] == "invalid_grant", response.text  # RFC 6749 §5.2

        async with anyio.create_task_group() as tg:
            for i in range(RACERS):
                tg.start_soon(redeem, i)
        winners += bool(issued)
        survivors += await d.survived(grant.grant_id, issued[-3:])
    report("one code redeemed concurrently (replay)", TRIALS, survivors, f"({winners} trials had a winner)")
    assert survivors == 0


async def test_a_refresh_whose_upstream_session_check_takes_seconds_never_resurrects_a_grant_revoked_meanwhile(
    deployment: Deployment,
) -> None:
    """Our /token refresh re-checks the upstream session (2 s at the IdP) in one process while
    the grant is revoked in the other: the refresh is refused and nothing comes back."""
    d = deployment
    d.idp.refresh_delay = SLOW_REFRESH_SECONDS
    trials = 12
    outcomes: list[tuple[int, bool]] = []
    try:

        async def trial(n: int) -> None:
            upstream = UpstreamTokens(access_token="up-at", refresh_token="up-rt", expires_at=time.time() + 600)
            grant_id = await d.new_grant(upstream=upstream, checked_at=time.time() - 100)  # a check is due
            racing, revoking = await d.new_refresh_token(grant_id), await d.new_refresh_token(grant_id)
            async with anyio.create_task_group() as tg:
                result: list[int] = []

                async def refresh() -> None:
                    result.append((await d.refresh(n, racing)).status_code)

                tg.start_soon(refresh)
                await anyio.sleep(random.uniform(0.2, SLOW_REFRESH_SECONDS - 0.3))
                assert (await d.revoke(n + 1, revoking)).status_code == 200
            outcomes.append((result[0], await d.survived(grant_id, [])))

        async with anyio.create_task_group() as tg:
            for n in range(trials):
                tg.start_soon(trial, n)
    finally:
        d.idp.refresh_delay = 0.0
    resurrected = sum(alive for _, alive in outcomes)
    report("slow upstream re-check at /token vs /revoke", trials, resurrected, racers=1)
    assert resurrected == 0
    assert {status for status, _ in outcomes} == {400}


async def test_a_tool_refreshing_upstream_tokens_for_seconds_never_resurrects_a_grant_revoked_meanwhile(
    deployment: Deployment,
) -> None:
    """The upstream-token vault in this process refreshes (2 s at the IdP) while an
    authorization-server process revokes the grant: the vault hands out nothing and writes
    nothing back."""
    d = deployment
    d.idp.refresh_delay = SLOW_REFRESH_SECONDS
    client = UpstreamClient(d.upstream_settings, "http://127.0.0.1/cb", SystemClock())
    vault = UpstreamTokenService(d.repo, client, SystemClock())
    trials = 12
    results: list[tuple[Any, bool]] = []
    try:

        async def trial(n: int) -> None:
            upstream = UpstreamTokens(access_token="up-at", refresh_token="up-rt", expires_at=time.time() + 5)
            grant_id = await d.new_grant(upstream=upstream, checked_at=time.time())
            revoking = await d.new_refresh_token(grant_id)
            access = FederatedAccessToken(
                token="t", client_id=d.client_id, scopes=["mcp"], expires_at=int(time.time()) + 60, grant_id=grant_id
            )
            got: list[Any] = []
            async with anyio.create_task_group() as tg:

                async def tool() -> None:
                    got.append(await vault.tokens_for(access))

                tg.start_soon(tool)
                await anyio.sleep(random.uniform(0.2, SLOW_REFRESH_SECONDS - 0.3))
                assert (await d.revoke(n, revoking)).status_code == 200
            results.append((got[0], await d.survived(grant_id, [])))

        async with anyio.create_task_group() as tg:
            for n in range(trials):
                tg.start_soon(trial, n)
    finally:
        d.idp.refresh_delay = 0.0
        await client.aclose()
    resurrected = sum(alive for _, alive in results)
    report("slow upstream refresh in the vault vs /revoke", trials, resurrected, racers=1)
    assert resurrected == 0
    assert all(tokens is None for tokens, _ in results)  # nothing handed to the tool after revocation
