"""An integrated server in the test's event loop, and a raw OAuth client to poke at it.

The MCP SDK's client drives the happy paths (see test_end_to_end); these helpers speak the
protocol by hand over real HTTP so tests can send what a well-behaved client never would.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import anyio
import httpx2
from key_value.aio.protocols import AsyncKeyValue
from key_value.aio.stores.memory import MemoryStore
from server import build_app  # examples/fastmcp_integrated/server.py

from mcp_oidc_provider import Clock, OIDCProvider, ProviderSettings, UpstreamSettings
from mcp_oidc_provider.run.devidp import DEV_CLIENT_ID, DEV_CLIENT_SECRET
from mcp_oidc_provider.run.env import load_env_config
from mcp_oidc_provider.run.headless_login import login_headlessly
from support.net import free_port, serve_in_loop

MCP_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw-test-client", "version": "0"},
    },
}


def token_form(storage: Any, **form: str) -> dict[str, str]:
    """A token-endpoint form for the client an SDK ``OAuthClientProvider`` registered."""
    assert storage.client is not None
    data = {"client_id": storage.client.client_id or "", **form}
    if storage.client.client_secret:
        data["client_secret"] = storage.client.client_secret
    return data


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


@dataclass
class Client:
    client_id: str
    client_secret: str | None
    redirect_uri: str
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Harness:
    base: str
    provider: OIDCProvider | None
    store: AsyncKeyValue | None
    http: httpx2.AsyncClient
    #: The MCP server tokens are for; by default the integrated one at base/mcp.
    resource: str | None = None

    @property
    def mcp_url(self) -> str:
        return self.resource or self.base + "/mcp"

    async def register(self, redirect_uri: str | None = None, **extra: Any) -> Client:
        redirect_uri = redirect_uri or f"http://127.0.0.1:{free_port()}/callback"
        body = {"redirect_uris": [redirect_uri], "client_name": "test client", **extra}
        response = await self.http.post(self.base + "/register", json=body)
        assert response.status_code == 201, response.text
        data = response.json()
        return Client(data["client_id"], data.get("client_secret"), redirect_uri, data)

    def authorize_url(self, client: Client, challenge: str, state: str = "client-state", **extra: str) -> str:
        query = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uri,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
            "resource": self.mcp_url,
            **extra,
        }
        return f"{self.base}/authorize?{urlencode(query)}"

    async def browser_login(
        self, url: str, redirect_uri: str, user: str = "alice", action: str = "login"
    ) -> dict[str, str]:
        """What the user's browser does: through /authorize, the IdP, our callback, to the client."""
        return await anyio.to_thread.run_sync(login_headlessly, url, redirect_uri, user, action)

    async def follow_to_client(self, url: str, redirect_uri: str, consent: str = "approve") -> dict[str, str]:
        """Follow redirects, answering the consent page, with no IdP login form (a warm session)."""
        from mcp_oidc_provider.run.headless_login import consent_form

        target = urlsplit(redirect_uri)
        async with httpx2.AsyncClient(follow_redirects=False, timeout=10) as http:
            for _ in range(10):
                parts = urlsplit(url)
                if (parts.netloc, parts.path) == (target.netloc, target.path):
                    return dict(parse_qsl(parts.query))
                response = await http.get(url)
                if response.status_code == 200 and parts.path.endswith("/consent"):
                    action, fields = consent_form(response.text)
                    response = await http.post(action, data={**fields, "action": consent})
                if response.status_code not in (302, 303, 307):
                    return {"_status": str(response.status_code), "_body": response.text}
                url = response.headers["location"]
        raise AssertionError("too many redirects")

    async def to_upstream(
        self, browser: httpx2.AsyncClient, client: Client, challenge: str, consent: str = "approve", **extra: str
    ) -> str:
        """As a browser: /authorize, then the consent page (answered), up to the IdP's URL."""
        from mcp_oidc_provider.run.headless_login import consent_form

        response = await browser.get(self.authorize_url(client, challenge, **extra))
        assert response.status_code == 302, response.text
        consent_url = response.headers["location"]
        response = await browser.get(consent_url)
        if response.status_code == 200:
            action, fields = consent_form(response.text)
            response = await browser.post(action, data={**fields, "action": consent})
        assert response.status_code == 302, response.text
        return str(response.headers["location"])

    async def token(self, client: Client, **form: str) -> httpx2.Response:
        data = {"client_id": client.client_id, **form}
        if client.client_secret:
            data["client_secret"] = client.client_secret
        return await self.http.post(self.base + "/token", data=data)

    async def redeem_with(self, client: Client, code: str, verifier: str, **form: str) -> httpx2.Response:
        return await self.token(
            client,
            grant_type="authorization_code",
            code=code,
            code_verifier=verifier,
            redirect_uri=client.redirect_uri,
            **form,
        )

    async def redeem(self, client: Client, code: str, verifier: str) -> httpx2.Response:
        return await self.token(
            client, grant_type="authorization_code", code=code, code_verifier=verifier, redirect_uri=client.redirect_uri
        )

    async def login_and_redeem(
        self, client: Client | None = None, user: str = "alice"
    ) -> tuple[Client, dict[str, Any]]:
        client = client or await self.register()
        verifier, challenge = pkce()
        query = await self.browser_login(self.authorize_url(client, challenge), client.redirect_uri, user)
        assert "code" in query, query
        response = await self.redeem(client, query["code"], verifier)
        assert response.status_code == 200, response.text
        return client, response.json()

    async def call_tool(self, access_token: str, name: str) -> dict[str, Any]:
        """tools/call through the SDK's client session, authenticated by a bearer token."""
        import json

        from client import httpx  # the SDK's HTTP client module for this mcp major
        from mcp import ClientSession
        from mcp.client.streamable_http import streamable_http_client

        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                httpx.AsyncClient(headers={"Authorization": f"Bearer {access_token}"}, timeout=15)
            )
            streams = await stack.enter_async_context(streamable_http_client(self.mcp_url, http_client=http))
            session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
            await session.initialize()
            result = await session.call_tool(name, {})
            return dict(json.loads(result.content[0].text))  # type: ignore[union-attr]

    async def warm_login(self, client: Client | None = None) -> tuple[Client, dict[str, Any]]:
        """Register (unless given a client), log in at an IdP with a warm session, redeem the code."""
        client = client or await self.register()
        verifier, challenge = pkce()
        query = await self.follow_to_client(self.authorize_url(client, challenge), client.redirect_uri)
        response = await self.redeem(client, query["code"], verifier)
        assert response.status_code == 200, response.text
        return client, response.json()

    async def mcp(self, access_token: str | None) -> httpx2.Response:
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        if access_token is not None:
            headers["Authorization"] = f"Bearer {access_token}"
        return await self.http.post(self.mcp_url, json=MCP_INITIALIZE, headers=headers)


@contextlib.asynccontextmanager
async def integrated_server(
    upstream_issuer: str,
    *,
    client_id: str = DEV_CLIENT_ID,
    client_secret: str | None = DEV_CLIENT_SECRET,
    store: AsyncKeyValue | None = None,
    clock: Clock | None = None,
    start: bool = True,
    claims_mapper: Any = None,
    extra_tools: Any = (),
    encryption_keys: str | None = None,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    port = free_port()
    # The deployment's secrets, as a test set them in the environment (JWKS, SECRET_KEY...).
    secrets_from_env = {k: v for k, v in os.environ.items() if k in ("JWKS", "SECRET_KEY", "ENCRYPTION_KEYS")}
    config = load_env_config({**secrets_from_env, "PORT": str(port)})
    settings = ProviderSettings(
        issuer_url=config.base_url,
        resource_urls=config.resource_urls,
        upstream=UpstreamSettings(issuer=upstream_issuer, client_id=client_id, client_secret=client_secret),
        **overrides,
    )
    store = store if store is not None else MemoryStore()
    provider = OIDCProvider(
        settings,
        store,
        clock=clock,
        claims_mapper=claims_mapper,
        jwks=config.jwks,
        secret_key=config.secret_key,
        encryption_keys=encryption_keys or config.encryption_keys,
    )
    if start:
        await provider.start()
    app = build_app(provider, config, extra_tools)
    async with serve_in_loop(app, port) as base, httpx2.AsyncClient(timeout=15) as http:
        try:
            yield Harness(base, provider, store, http)
        finally:
            await provider.aclose()
