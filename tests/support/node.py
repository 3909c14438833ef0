"""The npm packages the client tests drive, installed by tests/clients/install.sh."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from support.net import ROOT

CLIENTS = ROOT / "tests" / "clients"
TS_CLIENT = CLIENTS / "ts"
CONFORMANCE = CLIENTS / "conformance"
INSTALL_HINT = "npm packages missing: run tests/clients/install.sh"


def require_installed(package_dir: Path, package: str) -> Path:
    """The installed package's directory; the test FAILS (not skips) when it is missing."""
    installed = package_dir / "node_modules" / package / "package.json"
    if not installed.is_file():
        pytest.fail(f"{INSTALL_HINT} ({installed.relative_to(ROOT)} not found)", pytrace=False)
    return installed.parent


def machine_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (20+) not on PATH", pytrace=False)
    return node


async def read_event(stream: asyncio.StreamReader, timeout: float) -> dict[str, Any] | None:
    """The next JSON line a node script printed, or None at end of output."""
    while True:
        line = await asyncio.wait_for(stream.readline(), timeout)
        if not line:
            return None
        text = line.decode().strip()
        if text.startswith("{"):
            return dict(json.loads(text))
