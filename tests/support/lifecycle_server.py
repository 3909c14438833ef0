"""A server process for the grant life-cycle tests, on a shared store under a key prefix.

``ROLE=auth``: the standalone authorization server (as ``mcp-oidc-provider serve``) with extra
``ProviderSettings`` from ``PROVIDER_OVERRIDES`` (JSON). ``ROLE=mcp``: the proxy-mode MCP server
of ``examples/proxy_mode/mcp_server.py``. ``ROLE=vault``: a replica's tools asking for the
upstream tokens of grant ``GRANT_ID``, ``COUNT`` at once at epoch ``START_AT``; prints the
upstream access tokens they got, as JSON. Both keep their collections under
``COLLECTION_PREFIX`` in ``STORE_URL``, so tests share the machine's Redis without touching
anyone else's keys. Other variables as in :mod:`mcp_oidc_provider.run.env`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import uvicorn
from key_value.aio.protocols import AsyncKeyValue
from key_value.aio.wrappers.prefix_collections import PrefixCollectionsWrapper

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "proxy_mode"))

from mcp_oidc_provider import OIDCProvider, OIDCTokenVerifier, store_from_url  # noqa: E402
from mcp_oidc_provider.run.env import load_env_config  # noqa: E402
from mcp_oidc_provider.run.standalone import build_auth_app  # noqa: E402


def shared_store() -> AsyncKeyValue:
    return PrefixCollectionsWrapper(store_from_url(os.environ["STORE_URL"]), os.environ["COLLECTION_PREFIX"])


async def serve_auth() -> None:
    config = load_env_config()
    assert config.upstream_issuer and config.upstream_client_id
    base = config.provider_settings(config.upstream_issuer, config.upstream_client_id, config.upstream_client_secret)
    settings = base.model_copy(update=json.loads(os.environ.get("PROVIDER_OVERRIDES", "{}")))
    provider = OIDCProvider(settings, shared_store(), jwks=config.jwks, secret_key=config.secret_key)
    await provider.start()
    server = uvicorn.Server(
        uvicorn.Config(build_auth_app(provider), host="127.0.0.1", port=config.port, log_level="warning")
    )
    try:
        await server.serve()
    finally:
        await provider.aclose()


async def serve_mcp() -> None:
    from mcp_server import build_app  # examples/proxy_mode/mcp_server.py

    config = load_env_config()
    verifier = OIDCTokenVerifier(
        issuer=os.environ["AUTH_ISSUER"],
        resource_url=config.base_url + "/mcp",
        store=shared_store(),
        secret_key=config.secret_key,
    )
    app = build_app(verifier, "127.0.0.1", config.port, config.base_url)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=config.port, log_level="warning"))
    try:
        await server.serve()
    finally:
        await verifier.aclose()


async def read_upstream_tokens() -> None:
    import time

    from mcp_oidc_provider import SystemClock, UpstreamSettings
    from mcp_oidc_provider.core.models import FederatedAccessToken
    from mcp_oidc_provider.crypto.sealing import Sealer
    from mcp_oidc_provider.store.repository import Repository
    from mcp_oidc_provider.upstream.client import UpstreamClient
    from mcp_oidc_provider.upstream.vault import UpstreamTokenService

    config = load_env_config()
    assert config.secret_key and config.upstream_issuer and config.upstream_client_id
    repo = Repository(shared_store())
    repo.sealer = Sealer.derived(config.secret_key)
    settings = UpstreamSettings(
        issuer=config.upstream_issuer,
        client_id=config.upstream_client_id,
        client_secret=config.upstream_client_secret,
    )
    client = UpstreamClient(settings, "http://127.0.0.1/unused", SystemClock())
    await client.metadata()
    vault = UpstreamTokenService(repo, client, SystemClock())
    access = FederatedAccessToken(
        token="t", client_id="c", scopes=[], expires_at=int(time.time()) + 60, grant_id=os.environ["GRANT_ID"]
    )
    got: list[str | None] = []

    async def read() -> None:
        tokens = await vault.tokens_for(access)
        got.append(tokens.access_token if tokens else None)

    await anyio.sleep(max(0.0, float(os.environ["START_AT"]) - time.time()))
    async with anyio.create_task_group() as tg:
        for _ in range(int(os.environ["COUNT"])):
            tg.start_soon(read)
    await client.aclose()
    print(json.dumps(got), flush=True)


if __name__ == "__main__":
    role = os.environ.get("ROLE", "auth")
    anyio.run({"auth": serve_auth, "mcp": serve_mcp, "vault": read_upstream_tokens}[role])
