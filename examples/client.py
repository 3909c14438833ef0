"""A small MCP client that logs in and calls ``whoami``.

    python examples/client.py http://127.0.0.1:8000/mcp              # opens your browser
    python examples/client.py http://127.0.0.1:8000/mcp --headless   # logs in to the dev IdP itself

It uses the SDK's own ``OAuthClientProvider``: discovery, dynamic registration, PKCE, the
browser login, the token exchange and refresh all happen inside the SDK, as in real clients.
Works with mcp 2.x and 1.x.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import socket
import sys
import threading
import webbrowser
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

try:  # mcp 2.x
    import httpx2 as httpx
    from mcp.shared.auth import AuthorizationCodeResult

    def callback_result(query: dict[str, str]) -> Any:
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))

except ImportError:  # mcp 1.x
    import httpx  # type: ignore[no-redef]

    def callback_result(query: dict[str, str]) -> Any:
        return query["code"], query.get("state")


class MemoryTokenStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BrowserLogin:
    """Open the system browser and catch the redirect on a loopback port (RFC 8252 §7.3)."""

    def __init__(self, port: int) -> None:
        self.result: dict[str, str] = {}
        self.done = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.result = dict(parse_qsl(urlsplit(self.path).query))
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(b"<p>Login complete; you can close this tab.</p>")
                owner.done.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    async def redirect(self, url: str) -> None:
        print(f"Opening the browser to log in:\n  {url}", file=sys.stderr)
        webbrowser.open(url)

    async def callback(self) -> Any:
        await anyio.to_thread.run_sync(self.done.wait)
        self.server.shutdown()
        return callback_result(self.result)


class HeadlessLogin:
    """Log in to the development IdP by submitting its form, as a browser would."""

    def __init__(self, redirect_uri: str, user: str) -> None:
        self.redirect_uri = redirect_uri
        self.user = user
        self.result: dict[str, str] = {}

    async def redirect(self, url: str) -> None:
        from mcp_oidc_provider.run.headless_login import login_headlessly

        self.result = await anyio.to_thread.run_sync(login_headlessly, url, self.redirect_uri, self.user)

    async def callback(self) -> Any:
        if "code" not in self.result:
            raise RuntimeError(f"login failed: {self.result.get('error')}: {self.result.get('error_description')}")
        return callback_result(self.result)


async def call_whoami(
    server_url: str,
    headless: bool,
    user: str,
    storage: MemoryTokenStorage | None = None,
    client_metadata_url: str | None = None,
    redirect_uri: str | None = None,
) -> dict[str, Any]:
    """Log in if ``storage`` holds no tokens, then call ``whoami`` and return its JSON.

    With ``client_metadata_url`` the client identifies itself by its Client ID Metadata Document
    (MCP 2026-07-28) when the server advertises support, and registers dynamically otherwise;
    ``redirect_uri`` must then be one the document lists."""
    port = urlsplit(redirect_uri).port if redirect_uri else None
    port = port or free_port()
    redirect_uri = redirect_uri or f"http://127.0.0.1:{port}/callback"
    if storage is not None and storage.client is not None and storage.client.redirect_uris:
        redirect_uri = str(storage.client.redirect_uris[0])
        port = urlsplit(redirect_uri).port or port
    login: HeadlessLogin | BrowserLogin = HeadlessLogin(redirect_uri, user) if headless else BrowserLogin(port)
    auth = OAuthClientProvider(
        server_url=server_url,
        client_metadata=OAuthClientMetadata.model_validate(
            {
                "client_name": "mcp-oidc-provider example client",
                "redirect_uris": [redirect_uri],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            }
        ),
        storage=storage if storage is not None else MemoryTokenStorage(),
        redirect_handler=login.redirect,
        callback_handler=login.callback,
        client_metadata_url=client_metadata_url,
    )
    async with contextlib.AsyncExitStack() as stack:
        http_client = await stack.enter_async_context(httpx.AsyncClient(auth=auth, timeout=30))
        streams = await stack.enter_async_context(streamable_http_client(server_url, http_client=http_client))
        session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
        await session.initialize()
        result = await session.call_tool("whoami", {})
        text = result.content[0].text  # type: ignore[union-attr]
        return dict(json.loads(text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server_url", nargs="?", default="http://127.0.0.1:8000/mcp")
    parser.add_argument("--headless", action="store_true", help="log in to the development IdP without a browser")
    parser.add_argument("--user", default="alice", help="user name for --headless (development IdP only)")
    parser.add_argument("--client-metadata-url", help="identify with this Client ID Metadata Document (https URL)")
    parser.add_argument("--redirect-uri", help="the redirect URI (one the metadata document lists)")
    args = parser.parse_args()
    identity = anyio.run(
        call_whoami, args.server_url, args.headless, args.user, None, args.client_metadata_url, args.redirect_uri
    )
    print(json.dumps(identity, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
