"""Client ID Metadata Documents served over https on loopback (a trustme test CA), and an
integrated server that trusts that CA and, for loopback only, ``cimd_allow_loopback``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvicorn

from support.harness import Harness, integrated_server
from support.net import free_port


class Documents:
    """An https server on loopback serving scripted client metadata documents."""

    def __init__(self) -> None:
        self.base = ""
        self.bodies: dict[str, tuple[int, str, bytes]] = {}
        self.redirect_uri = f"http://127.0.0.1:{free_port()}/callback"

    def url(self, path: str) -> str:
        return self.base + path

    def serve_document(self, path: str, **overrides: Any) -> str:
        document: dict[str, Any] = {
            "client_id": self.url(path),
            "client_name": "CIMD test client",
            "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }
        document.update(overrides)
        self.serve(path, json.dumps(document).encode())
        return self.url(path)

    def serve(self, path: str, body: bytes, status: int = 200, content_type: str = "application/json") -> None:
        self.bodies[path] = (status, content_type, body)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        status, content_type, body = self.bodies.get(scope["path"], (404, "text/plain", b"not found"))
        headers = [(b"content-type", content_type.encode())]
        if status in (301, 302):
            headers.append((b"location", body))
            body = b""
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
async def documents(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Documents]:
    pem = Path(tmp_path_factory.mktemp("cimd")) / "server.pem"
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    docs = Documents()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            docs, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ssl_certfile=pem, ssl_keyfile=pem
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no start event
        await asyncio.sleep(0.02)
    docs.base = f"https://localhost:{port}"
    yield docs
    server.should_exit = True
    await task


@pytest.fixture(scope="module")
def ca_bundle(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = Path(tmp_path_factory.mktemp("cimd-ca")) / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
async def cimd_server(dev_idp: str, ca_bundle: str) -> AsyncIterator[Harness]:
    async with integrated_server(dev_idp, cimd_allow_loopback=True, cimd_ca_bundle=ca_bundle) as harness:
        yield harness
