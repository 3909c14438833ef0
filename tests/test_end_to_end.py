"""The whole flow over real HTTP: the example server as a process, the SDK's own OAuth client,
the development IdP as upstream, the login form submitted by the test."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from client import MemoryTokenStorage, call_whoami
from support.harness import token_form  # examples/client.py
from support.net import EXAMPLES, free_port, run_process


@pytest.fixture(scope="module")
def example_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = Path(tmp_path_factory.mktemp("example")) / "server.log"
    env = {"PORT": str(port), "UPSTREAM_ISSUER": "", "STORE_URL": "memory://"}
    with run_process(EXAMPLES / "fastmcp_integrated" / "server.py", env, base + "/health", log):
        yield base


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def test_a_user_logs_in_through_the_sdk_client_and_whoami_shows_the_idp_user(example_server: str) -> None:
    storage = MemoryTokenStorage()
    identity = await call_whoami(example_server + "/mcp", headless=True, user="alice", storage=storage)

    assert identity["sub"] == "alice"
    assert identity["claims"]["email"] == "alice@example.test"
    assert identity["claims"]["name"] == "Alice Example"
    assert storage.client is not None
    assert identity["client_id"] == storage.client.client_id
    assert identity["scopes"] == ["mcp"]
    assert identity["resource"] == example_server + "/mcp"


async def test_the_issuer_is_byte_identical_in_every_document_and_token(example_server: str) -> None:
    storage = MemoryTokenStorage()
    await call_whoami(example_server + "/mcp", headless=True, user="alice", storage=storage)
    async with httpx2.AsyncClient() as http:
        rfc8414 = (await http.get(example_server + "/.well-known/oauth-authorization-server")).json()
        oidc = (await http.get(example_server + "/.well-known/openid-configuration")).json()
        prm = (await http.get(example_server + "/.well-known/oauth-protected-resource/mcp")).json()
    assert storage.tokens is not None
    issuers = {
        rfc8414["issuer"],
        oidc["issuer"],
        prm["authorization_servers"][0],
        jwt_claims(storage.tokens.access_token)["iss"],
    }
    assert len(issuers) == 1
    for name in ("authorization_endpoint", "token_endpoint", "registration_endpoint", "revocation_endpoint"):
        assert oidc[name] == rfc8414[name]
    assert oidc["jwks_uri"].startswith(example_server)
    assert oidc["subject_types_supported"] == ["public"]
    assert oidc["id_token_signing_alg_values_supported"]


async def test_a_refresh_rotates_both_tokens_and_the_old_refresh_token_is_refused(example_server: str) -> None:
    storage = MemoryTokenStorage()
    await call_whoami(example_server + "/mcp", headless=True, user="alice", storage=storage)
    assert storage.tokens is not None and storage.tokens.refresh_token
    first = storage.tokens

    async with httpx2.AsyncClient() as http:
        refreshed = await http.post(
            example_server + "/token",
            data=token_form(storage, grant_type="refresh_token", refresh_token=first.refresh_token or ""),
        )
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.headers["cache-control"] == "no-store"
        new = refreshed.json()
        assert new["access_token"] != first.access_token
        assert new["refresh_token"] != first.refresh_token
        assert new["expires_in"] == 3600

        # The SDK client, given only the new tokens, calls the tool without a new login
        # (a new login would sign in "mallory").
        from mcp.shared.auth import OAuthToken

        storage.tokens = OAuthToken.model_validate(new)
        identity = await call_whoami(example_server + "/mcp", headless=True, user="mallory", storage=storage)
        assert identity["sub"] == "alice"

        replay = await http.post(
            example_server + "/token",
            data=token_form(storage, grant_type="refresh_token", refresh_token=first.refresh_token or ""),
        )
        assert replay.status_code == 400
        assert replay.json()["error"] == "invalid_grant"
        assert "access_token" not in replay.json()


async def test_a_revoked_access_token_gets_401_with_www_authenticate(example_server: str) -> None:
    storage = MemoryTokenStorage()
    await call_whoami(example_server + "/mcp", headless=True, user="alice", storage=storage)
    assert storage.tokens is not None
    access = storage.tokens.access_token
    async with httpx2.AsyncClient() as http:
        revoked = await http.post(example_server + "/revoke", data=token_form(storage, token=access))
        assert revoked.status_code == 200
        response = await http.post(
            example_server + "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Authorization": f"Bearer {access}", "Accept": "application/json, text/event-stream"},
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "resource_metadata=" in response.headers["www-authenticate"]
        # The refresh token of the revoked grant is dead too (RFC 7009 §2.1).
        refresh = await http.post(
            example_server + "/token",
            data=token_form(storage, grant_type="refresh_token", refresh_token=storage.tokens.refresh_token or ""),
        )
        assert refresh.status_code == 400
        assert refresh.json()["error"] == "invalid_grant"
