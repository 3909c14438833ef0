"""The example server (examples/fastmcp_integrated/server.py) as a real process on loopback,
with its embedded development IdP (no UPSTREAM_ISSUER) and an in-memory store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from support.net import EXAMPLES, free_port, run_process


@contextlib.contextmanager
def run_example_server(log_dir: Path) -> Iterator[str]:
    """Yields its base URL (the issuer); the MCP endpoint is base + "/mcp"."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"PORT": str(port), "UPSTREAM_ISSUER": "", "STORE_URL": "memory://"}
    with run_process(EXAMPLES / "fastmcp_integrated" / "server.py", env, base + "/health", log_dir / "server.log"):
        yield base
