"""Admin (issue 10 item 5): who has access, take it away, clients, signing-key rotation.

In-process against an integrated server on the memory store, and as a separate CLI process
against a proxy-mode pair (auth server + MCP server processes) on a private redis-server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from support.harness import Client, Harness, integrated_server
from support.net import free_port
from test_proxy_mode import auth_server, mcp_server, raw

from mcp_oidc_provider.admin import Admin, AdminRefused
from mcp_oidc_provider.crypto.keys import generate_jwks


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


async def refresh(h: Harness, client: Client, refresh_token: str) -> httpx2.Response:
    return await h.token(client, grant_type="refresh_token", refresh_token=refresh_token)


async def jwks_kids(h: Harness) -> set[str]:
    response = await h.http.get(h.base + "/jwks")
    assert response.status_code == 200
    return {k["kid"] for k in response.json()["keys"]}


# in-process, memory store


async def test_grants_are_listed_by_user_and_client_and_revoking_a_user_ends_only_that_users_tokens(
    dev_idp: str,
) -> None:
    async with integrated_server(dev_idp) as h:
        assert h.provider is not None and h.store is not None
        client = await h.register()
        _, alice = await h.login_and_redeem(client, user="alice")
        _, bob = await h.login_and_redeem(client, user="bob")
        admin = Admin(h.store, h.provider.settings)

        [alice_grant] = await admin.grants(user="alice")
        assert (alice_grant.subject, alice_grant.client_id, alice_grant.resource) == (
            "alice",
            client.client_id,
            h.mcp_url,
        )
        assert alice_grant.scopes == ["mcp"] and alice_grant.expires_at is not None
        assert alice_grant.expires_at > alice_grant.created_at
        assert {g.subject for g in await admin.grants(client=client.client_id)} == {"alice", "bob"}
        assert await admin.grants(user="carol") == []

        revoked = await admin.revoke(user="alice")
        assert [g.grant_id for g in revoked] == [alice_grant.grant_id]

        assert (await h.mcp(alice["access_token"])).status_code == 401
        refused = await refresh(h, client, alice["refresh_token"])
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
        assert (await h.mcp(bob["access_token"])).status_code == 200
        assert (await refresh(h, client, bob["refresh_token"])).status_code == 200
        assert await admin.grants(user="alice") == []
        assert [g.subject for g in await admin.grants(client=client.client_id)] == ["bob"]
        # Revoking again finds nothing live.
        assert await admin.revoke(user="alice") == []


async def test_a_grant_revoked_by_the_client_at_the_revocation_endpoint_is_not_listed(dev_idp: str) -> None:
    async with integrated_server(dev_idp) as h:
        assert h.provider is not None and h.store is not None
        client, tokens = await h.login_and_redeem(user="alice")
        admin = Admin(h.store, h.provider.settings)
        assert len(await admin.grants(user="alice")) == 1
        form = {"token": tokens["refresh_token"], "client_id": client.client_id, "client_secret": client.client_secret}
        assert (await h.http.post(h.base + "/revoke", data=form)).status_code == 200
        assert await admin.grants(user="alice") == []
        assert await admin.grants(client=client.client_id) == []


async def test_revoking_one_grant_leaves_the_users_other_grants_alone(dev_idp: str) -> None:
    async with integrated_server(dev_idp) as h:
        assert h.provider is not None and h.store is not None
        first, one = await h.login_and_redeem(user="alice")
        second, two = await h.login_and_redeem(user="alice")
        admin = Admin(h.store, h.provider.settings)
        grants = await admin.grants(user="alice")
        assert {g.client_id for g in grants} == {first.client_id, second.client_id}
        target = next(g for g in grants if g.client_id == first.client_id)
        assert [g.grant_id for g in await admin.revoke(grant=target.grant_id)] == [target.grant_id]
        assert (await h.mcp(one["access_token"])).status_code == 401
        assert (await h.mcp(two["access_token"])).status_code == 200


async def test_deleting_a_client_revokes_its_grants_and_its_registration(dev_idp: str) -> None:
    async with integrated_server(dev_idp) as h:
        assert h.provider is not None and h.store is not None
        client, tokens = await h.login_and_redeem(user="alice")
        _, other_tokens = await h.login_and_redeem(user="alice")
        admin = Admin(h.store, h.provider.settings)
        listed = {c.client_id: c for c in await admin.clients()}
        assert listed[client.client_id].redirect_uris == [client.redirect_uri]
        assert listed[client.client_id].client_name == "test client"
        assert listed[client.client_id].created_at is not None

        deleted, revoked = await admin.delete_client(client.client_id)
        assert deleted and [g.client_id for g in revoked] == [client.client_id]
        assert client.client_id not in {c.client_id for c in await admin.clients()}
        assert (await h.mcp(tokens["access_token"])).status_code == 401
        refused = await refresh(h, client, tokens["refresh_token"])
        assert refused.status_code == 401 and refused.json()["error"] in ("invalid_client", "unauthorized_client")
        assert (await h.mcp(other_tokens["access_token"])).status_code == 200
        assert await admin.delete_client(client.client_id) == (False, [])


async def test_key_rotation_publishes_then_signs_with_the_new_key_and_retiring_the_old_one_refuses_its_tokens(
    dev_idp: str,
) -> None:
    refresh_every = 0.3
    async with integrated_server(dev_idp, key_refresh_seconds=refresh_every) as h:
        assert h.provider is not None and h.store is not None
        client, tokens = await h.login_and_redeem(user="alice")
        admin = Admin(h.store, h.provider.settings)
        [old] = await admin.keys()
        assert old.state == "signing" and kid_of(tokens["access_token"]) == old.kid

        new = await admin.rotate_keys()
        with pytest.raises(AdminRefused, match="already next"):
            await admin.rotate_keys()
        with pytest.raises(AdminRefused, match="wait"):  # servers have not re-read the keys yet
            await admin.promote_key()
        await asyncio.sleep(refresh_every + 0.1)
        assert await jwks_kids(h) == {old.kid, new.kid}
        rotated = (await refresh(h, client, tokens["refresh_token"])).json()
        assert kid_of(rotated["access_token"]) == old.kid  # published, not signing yet

        await admin.promote_key()
        await asyncio.sleep(refresh_every + 0.1)
        promoted = (await refresh(h, client, rotated["refresh_token"])).json()
        assert kid_of(promoted["access_token"]) == new.kid
        assert (await h.mcp(promoted["access_token"])).status_code == 200
        assert (await h.mcp(tokens["access_token"])).status_code == 200  # old key still verifies
        states = {k.kid: k.state for k in await admin.keys()}
        assert states == {new.kid: "signing", old.kid: "retiring"}

        with pytest.raises(AdminRefused, match="signs"):
            await admin.retire_key(new.kid)
        with pytest.raises(AdminRefused, match="may be live"):  # access-token lifetime not over
            await admin.retire_key(old.kid)
        await admin.retire_key(old.kid, force=True)
        await asyncio.sleep(refresh_every + 0.1)
        assert (await h.mcp(tokens["access_token"])).status_code == 401
        assert (await h.mcp(promoted["access_token"])).status_code == 200
        assert await jwks_kids(h) == {new.kid}


async def test_key_operations_refuse_when_the_keys_come_from_the_jwks_setting(dev_idp: str) -> None:
    async with integrated_server(dev_idp) as h:
        assert h.store is not None
        admin = Admin(h.store, jwks=generate_jwks())
        for operation in (admin.keys(), admin.rotate_keys(), admin.promote_key(), admin.retire_key("any")):
            with pytest.raises(AdminRefused, match="JWKS variable"):
                await operation


# separate processes on a private Redis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own on a free port (the machine's Redis is shared)."""
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def cli(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JWKS", "SECRET_KEY", "ENCRYPTION_KEYS", "UPSTREAM_ISSUER")}
    return subprocess.run(
        [sys.executable, "-m", "mcp_oidc_provider.run.cli", "admin", *args],
        env={**env, "STORE_URL": store_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli_json(store_url: str, *args: str) -> Any:
    result = cli(store_url, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@contextlib.contextmanager
def proxy_pair(tmp: Path, idp: str, store_url: str) -> Iterator[tuple[str, str]]:
    mcp_port = free_port()
    resource = f"http://127.0.0.1:{mcp_port}/mcp"
    with auth_server(tmp, idp, store_url, resource) as issuer, mcp_server(tmp, issuer, store_url, mcp_port) as mcp_url:
        yield issuer, mcp_url


async def test_a_revocation_by_the_admin_cli_is_refused_by_the_mcp_server_on_its_next_request(
    tmp_path: Path, dev_idp: str, private_redis: str
) -> None:
    with proxy_pair(tmp_path, dev_idp, private_redis) as (issuer, mcp_url):
        async with raw(issuer, mcp_url) as h:
            client = await h.register()
            _, alice = await h.login_and_redeem(client, user="alice")
            _, bob = await h.login_and_redeem(client, user="bob")
            assert (await h.mcp(alice["access_token"])).status_code == 200

            listed = cli_json(private_redis, "grants", "--client", client.client_id)
            assert sorted(g["subject"] for g in listed) == ["alice", "bob"]
            table = cli(private_redis, "grants", "--user", "alice")
            assert table.returncode == 0 and "alice" in table.stdout and "1 grant(s)" in table.stdout

            result = cli(private_redis, "revoke", "--user", "alice", "--json")
            revoked_at = time.perf_counter()
            assert result.returncode == 0, result.stderr
            assert [g["subject"] for g in json.loads(result.stdout)["revoked"]] == ["alice"]
            assert "grant.revoked" in result.stderr  # the audit event, like the provider's own
            # Immediate today; allow a propagation interval should verifiers cache the grant.
            while (status := (await h.mcp(alice["access_token"])).status_code) == 200:
                assert time.perf_counter() - revoked_at < 10
                await asyncio.sleep(0.2)
            assert status == 401
            print(f"\nadmin revocation refused by the MCP server after {time.perf_counter() - revoked_at:.3f} s")
            refused = await refresh(h, client, alice["refresh_token"])
            assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
            assert (await h.mcp(bob["access_token"])).status_code == 200
            assert (await refresh(h, client, bob["refresh_token"])).status_code == 200

            clients = cli_json(private_redis, "clients")
            assert client.client_id in {c["client_id"] for c in clients}
            deleted = cli_json(private_redis, "delete-client", client.client_id)
            assert deleted["deleted"] and [g["subject"] for g in deleted["revoked"]] == ["bob"]
            assert (await h.mcp(bob["access_token"])).status_code == 401
            missing = cli(private_redis, "delete-client", client.client_id)
            assert missing.returncode == 1 and missing.stderr.strip().startswith("refused:")


async def test_key_rotation_through_the_cli_keeps_every_token_verifying_at_a_separate_mcp_server(
    tmp_path: Path, dev_idp: str, private_redis: str
) -> None:
    with proxy_pair(tmp_path, dev_idp, private_redis) as (issuer, mcp_url):
        [old] = cli_json(private_redis, "keys", "list")
        new = cli_json(private_redis, "keys", "rotate")
        async with raw(issuer, mcp_url) as h:
            # Published before the MCP server first loads keys: it knows the next key in advance.
            client, tokens = await h.login_and_redeem(user="alice")
            assert kid_of(tokens["access_token"]) == old["kid"]
            assert (await h.mcp(tokens["access_token"])).status_code == 200
            deadline = time.monotonic() + 30
            while await jwks_kids(h) != {old["kid"], new["kid"]}:
                assert time.monotonic() < deadline, "the auth server never published the next key"
                await asyncio.sleep(0.5)

            early = cli(private_redis, "keys", "promote")
            if early.returncode == 1:  # refused: servers might not know the key yet
                assert "wait" in early.stderr
                assert cli(private_redis, "keys", "promote", "--force").returncode == 0
            current = tokens
            while kid_of(current["access_token"]) != new["kid"]:
                assert time.monotonic() < deadline + 30, "the auth server never signed with the new key"
                response = await refresh(h, client, current["refresh_token"])
                assert response.status_code == 200, response.text
                current = response.json()
                await asyncio.sleep(0.5)
            assert (await h.mcp(current["access_token"])).status_code == 200
            assert (await h.mcp(tokens["access_token"])).status_code == 200  # old tokens still verify

            too_early = cli(private_redis, "keys", "retire", old["kid"])
            assert too_early.returncode == 1 and "may be live" in too_early.stderr
            states = {k["kid"]: k["state"] for k in cli_json(private_redis, "keys", "list")}
            assert states == {new["kid"]: "signing", old["kid"]: "retiring"}


def test_the_admin_cli_refuses_an_unshared_or_unreachable_store_in_one_line() -> None:
    for url, expected in (
        ("memory://", "STORE_URL is memory://"),
        (f"redis://127.0.0.1:{free_port()}/0", "cannot reach"),
    ):
        result = cli(url, "clients")
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and expected in result.stderr


def test_the_admin_cli_refuses_key_rotation_when_jwks_is_configured(tmp_path: Path) -> None:
    env = {**os.environ, "STORE_URL": f"disk://{tmp_path}/store", "JWKS": json.dumps(generate_jwks())}
    result = subprocess.run(
        [sys.executable, "-m", "mcp_oidc_provider.run.cli", "admin", "keys", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "JWKS variable" in result.stderr
