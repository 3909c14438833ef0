"""Loopback helpers: free ports, real server processes, in-process uvicorn servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx2
import uvicorn

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[str] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"process exited with {process.returncode}:\n{out}")
        try:
            if httpx2.get(url, timeout=1).status_code < 500:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up")


@contextlib.contextmanager
def run_process(
    script: Path, env: Mapping[str, str], health_url: str, log_path: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, str(script)], env=full_env, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    try:
        try:
            wait_until_up(health_url, None, timeout=30)
        except TimeoutError:
            process.kill()
            raise
        if process.poll() is not None:
            raise RuntimeError(f"{script.name} exited with {process.returncode}")
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        if log_path:
            log.close()  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def serve_in_loop(app: Any, port: int) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on loopback inside the running event loop."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", proxy_headers=False)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
