"""The TypeScript MCP SDK's OAuth client (npm @modelcontextprotocol/sdk, pinned in
tests/clients/ts/package.json) against the example server as a real process on loopback.

For each token endpoint auth method the node script registers dynamically, logs in (this
test plays the browser: consent page and development IdP, headlessly), calls whoami, is
forced to refresh (its access token spoiled, so the SDK refreshes on the 401 by itself),
calls whoami again, and presents the first refresh token once more, which must be refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest
from support.cimd_documents import Documents, ca, ca_bundle, cimd_server, documents
from support.example_server import run_example_server
from support.harness import Harness
from support.net import free_port
from support.node import TS_CLIENT, machine_node, read_event, require_installed

from mcp_oidc_provider.run.headless_login import login_headlessly

SDK_PACKAGE = "@modelcontextprotocol/sdk"

__all__ = ["ca", "ca_bundle", "cimd_server", "documents"]  # fixtures


@pytest.fixture(scope="module")
def example_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_installed(TS_CLIENT, SDK_PACKAGE)
    with run_example_server(tmp_path_factory.mktemp("example")) as base:
        yield base


async def run_ts_client(
    mcp_url: str,
    method: str,
    user: str = "alice",
    redirect_uri: str | None = None,
    client_metadata_url: str | None = None,
) -> list[dict[str, Any]]:
    """Run client.mjs to the end, doing the browser's part when it asks; its events in order."""
    require_installed(TS_CLIENT, SDK_PACKAGE)
    redirect_uri = redirect_uri or f"http://127.0.0.1:{free_port()}/callback"
    process = await asyncio.create_subprocess_exec(
        machine_node(),
        str(TS_CLIENT / "client.mjs"),
        mcp_url,
        method,
        redirect_uri,
        *([client_metadata_url] if client_metadata_url else []),
        cwd=TS_CLIENT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin and process.stdout and process.stderr
    events: list[dict[str, Any]] = []
    try:
        while (event := await read_event(process.stdout, timeout=30)) is not None:
            events.append(event)
            if event["event"] == "authorize":
                query = await anyio.to_thread.run_sync(login_headlessly, event["url"], redirect_uri, user)
                process.stdin.write(f"{redirect_uri}?{urlencode(query)}\n".encode())
                await process.stdin.drain()
        returncode = await asyncio.wait_for(process.wait(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = (await process.stderr.read()).decode()
    errors = [e["message"] for e in events if e["event"] == "error"]
    assert returncode == 0 and not errors, f"client.mjs failed: {errors or stderr[-2000:]}"
    return events


_runs: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}


async def ts_client_run(example_server: str, method: str) -> dict[str, dict[str, Any]]:
    """One run per server and method, shared by the tests that read it; events by name."""
    key = (example_server, method)
    if key not in _runs:
        _runs[key] = {e["event"]: e for e in await run_ts_client(example_server + "/mcp", method)}
    return _runs[key]


@pytest.mark.parametrize("method", ["none", "client_secret_post", "client_secret_basic"])
async def test_the_typescript_sdk_logs_in_calls_a_tool_refreshes_and_its_old_refresh_token_is_refused(
    example_server: str, method: str
) -> None:
    mcp_url = example_server + "/mcp"
    events = await ts_client_run(example_server, method)

    registered = events["registered"]
    assert registered["token_endpoint_auth_method"] == method
    assert registered["has_secret"] is (method != "none")

    identity = events["whoami"]["identity"]
    assert identity["sub"] == "alice"
    assert identity["client_id"] == registered["client_id"]
    assert identity["resource"] == mcp_url
    assert identity["claims"]["email"] == "alice@example.test"

    refreshed = events["refreshed"]
    assert refreshed["identity"]["sub"] == "alice"
    assert refreshed["access_token_changed"] and refreshed["refresh_token_rotated"]
    assert events["done"]["logins"] == 1  # the 401 was answered by a refresh, not a new login

    # RFC 6749 §10.4 / OAuth 2.1 §4.3.1: a rotated refresh token is dead.
    assert events["replay"]["refused"] is True
    assert events["replay"]["error"] == "invalid_grant"


@pytest.mark.parametrize("method", ["none", "client_secret_post", "client_secret_basic"])
async def test_the_typescript_sdk_authenticates_at_the_token_endpoint_the_way_it_registered(
    example_server: str, method: str
) -> None:
    events = await ts_client_run(example_server, method)
    requests = events["done"]["token_requests"]
    assert [r["grant_type"] for r in requests] == ["authorization_code", "refresh_token", "refresh_token"]
    for request in requests:
        # RFC 8707 §2: the SDK names the MCP server on every token request.
        assert request["resource"] == example_server + "/mcp"
        if method == "client_secret_basic":
            # RFC 6749 §2.3.1: the client id travels only in the Basic header.
            assert request["basic_header"] and not request["client_id_in_body"]
            assert not request["client_secret_in_body"]
        elif method == "client_secret_post":
            assert request["client_id_in_body"] and request["client_secret_in_body"]
            assert not request["basic_header"]
        else:
            assert request["client_id_in_body"] and not request["client_secret_in_body"]
            assert not request["basic_header"]


async def test_the_typescript_sdk_identifies_with_a_client_id_metadata_document_and_refreshes(
    cimd_server: Harness, documents: Documents
) -> None:
    client_id = documents.serve_document("/ts-client.json")
    events = {
        e["event"]: e
        for e in await run_ts_client(
            cimd_server.mcp_url, "none", redirect_uri=documents.redirect_uri, client_metadata_url=client_id
        )
    }
    # MCP 2026-07-28 "Client Registration": the URL is the client id; nothing was registered.
    assert events["registered"]["client_id"] == client_id
    assert events["whoami"]["identity"]["client_id"] == client_id
    assert events["whoami"]["identity"]["sub"] == "alice"
    assert events["refreshed"]["refresh_token_rotated"] is True
    assert events["done"]["logins"] == 1
    assert events["replay"]["refused"] is True
