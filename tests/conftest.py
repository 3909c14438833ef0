from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "tests", ROOT / "examples", ROOT / "examples" / "fastmcp_integrated"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from collections.abc import AsyncIterator, Iterator  # noqa: E402

import pytest  # noqa: E402

from mcp_oidc_provider.run.devidp import run_dev_idp  # noqa: E402


@pytest.fixture(scope="session")
def dev_idp() -> Iterator[str]:
    """The development IdP (oidc-provider-mock) on a loopback port, for the whole run."""
    with run_dev_idp() as issuer:
        yield issuer


@pytest.fixture
async def server(dev_idp: str) -> AsyncIterator[object]:
    from support.harness import integrated_server

    async with integrated_server(dev_idp) as harness:
        yield harness


@pytest.fixture
async def idp() -> AsyncIterator[object]:
    """A scriptable upstream IdP with a warm session (support.hostile_idp), on a loopback port."""
    from support.hostile_idp import HostileIdP
    from support.net import free_port, serve_in_loop

    hostile = HostileIdP()
    port = free_port()
    hostile.issuer = f"http://127.0.0.1:{port}"
    async with serve_in_loop(hostile.app(), port):
        yield hostile
