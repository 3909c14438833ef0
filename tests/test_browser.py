"""A real browser (headless Chromium, driven by Playwright) through the whole login.

The other tests play the browser's part over HTTP by hand; this one lets Chromium do it:
follow the redirects, render our consent page, send its form with the cookies it was given,
render the development IdP's login form and submit it, and land on the client's redirect
URI. Nothing listens there: the test intercepts that navigation and reads its URL.

These tests fail, never skip, without Playwright or Chromium: CI installs both (``.ci/run``
installs the Debian ``chromium`` package; the ``test`` extra brings ``playwright``). Set
``CHROMIUM`` to use a browser other than ``/usr/bin/chromium``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route as StarletteRoute
from support.harness import Client, Harness, integrated_server, pkce
from support.net import ROOT, free_port, serve_in_loop

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "artifacts"
TIMEOUT_MS = 15_000
CLIENT_NAME = "Browser Test Client"


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Fails (never skips) without Chromium: CI installs it."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium (or set CHROMIUM)")
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium_executable: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=chromium_executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile per test: no cookies from another test's login."""
    ctx = await browser.new_context(viewport={"width": 800, "height": 720})
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.set_default_navigation_timeout(TIMEOUT_MS)
    try:
        yield ctx
    finally:
        await ctx.close()


async def catch_redirect(page: Page, client: Client) -> asyncio.Future[dict[str, str]]:
    """Resolves with the query of the browser's navigation to the client's redirect URI.

    Nothing listens on that loopback port; the request is answered here, as a native
    client's one-shot loopback listener would, and never reaches the network.
    """
    target = urlsplit(client.redirect_uri)
    arrived: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    def is_redirect(url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc, parts.path) == (target.scheme, target.netloc, target.path)

    async def answer(route: Route) -> None:
        if not arrived.done():
            arrived.set_result(dict(parse_qsl(urlsplit(route.request.url).query, keep_blank_values=True)))
        await route.fulfill(status=200, content_type="text/plain", body="the client got its answer")

    await page.route(is_redirect, answer)
    return arrived


async def landed(page: Page, client: Client, arrived: asyncio.Future[dict[str, str]]) -> dict[str, str]:
    """The redirect URI's query, once the browser has finished loading that page."""
    query = await asyncio.wait_for(arrived, TIMEOUT_MS / 1000)
    await page.wait_for_url(lambda url: url.startswith(client.redirect_uri + "?"))
    assert await page.locator("body").inner_text() == "the client got its answer"
    return query


async def open_consent_page(page: Page, harness: Harness, client: Client, challenge: str) -> str:
    """/authorize in the browser; check it lands on our consent page, with its headers."""
    response = await page.goto(harness.authorize_url(client, challenge))
    assert response is not None
    assert response.status == 200, await response.text()
    assert urlsplit(response.url).path == "/consent", response.url
    assert response.url.startswith(harness.base + "/consent?login="), response.url
    headers = await response.all_headers()
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "no-store" in headers["cache-control"]

    assert await page.title() == "Allow access?"
    assert CLIENT_NAME in await page.locator("h1").inner_text()
    body = await page.locator("body").inner_text()
    assert urlsplit(client.redirect_uri).netloc in body  # where the browser will be sent
    assert harness.mcp_url in body  # the MCP server asked for
    assert await page.get_by_role("button", name="Allow").is_visible()
    assert await page.get_by_role("button", name="Deny").is_visible()
    return response.url


async def test_a_user_approves_in_a_real_browser_and_logs_in_at_the_idp(dev_idp: str, context: BrowserContext) -> None:
    async with integrated_server(dev_idp) as harness:
        assert harness.provider is not None
        client = await harness.register(f"http://127.0.0.1:{free_port()}/callback", client_name=CLIENT_NAME)
        verifier, challenge = pkce()
        page = await context.new_page()
        arrived = await catch_redirect(page, client)

        await open_consent_page(page, harness, client, challenge)
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "consent.png"
        await page.screenshot(path=str(screenshot), full_page=True)
        print(f"consent page screenshot: {screenshot}")

        await page.get_by_role("button", name="Allow").click()
        await page.wait_for_url(lambda url: url.startswith(dev_idp + "/"))
        subject = page.locator('input[type="text"][name="sub"]')
        await subject.fill("alice")
        await subject.locator("xpath=ancestor::form").locator('button[type="submit"]').click()

        query = await landed(page, client, arrived)
        assert set(query) == {"code", "state", "iss"}, query
        assert query["state"] == "client-state"
        assert query["iss"] == harness.provider.issuer

        response = await harness.redeem(client, query["code"], verifier)
        assert response.status_code == 200, response.text
        tokens = response.json()
        assert tokens["token_type"].lower() == "bearer"
        payload = tokens["access_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["sub"] == "alice"  # the name typed into the IdP's form
        assert claims["client_id"] == client.client_id
        assert (await harness.mcp(tokens["access_token"])).status_code == 200
        # The code is single-use, whoever replays it.
        assert (await harness.redeem(client, query["code"], verifier)).status_code == 400


async def test_the_consent_page_in_a_real_browser_shows_the_full_redirect_uri_and_the_idp_scopes(
    dev_idp: str, context: BrowserContext
) -> None:
    """MCP security best practices, "Consent UI Requirements": what Chromium renders (and a
    screenshot shows) names the full redirect URI and what we ask of the IdP; Allow then gets
    past the page's CSP ``form-action``, which Chromium applies to the redirect to the IdP too."""
    async with integrated_server(dev_idp) as harness:
        assert harness.provider is not None
        redirect_uri = f"http://127.0.0.1:{free_port()}/oauth/deep/callback/path"
        client = await harness.register(redirect_uri, client_name=CLIENT_NAME)
        page = await context.new_page()
        violations: list[str] = []
        page.on("console", lambda message: violations.append(message.text))

        await open_consent_page(page, harness, client, pkce()[1])
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "consent-full-redirect-uri.png"
        await page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 0

        text = await page.locator("body").inner_text()
        assert redirect_uri in text
        assert await page.locator("#redirect-uri").inner_text() == redirect_uri
        for scope in harness.provider.settings.upstream.scopes:
            assert scope in text
        assert harness.mcp_url in text

        await page.get_by_role("button", name="Allow").click()
        await page.wait_for_url(lambda url: url.startswith(dev_idp + "/"))
        assert not [v for v in violations if "form-action" in v], violations


async def test_a_user_denies_on_the_consent_page_and_the_client_gets_access_denied(
    dev_idp: str, context: BrowserContext
) -> None:
    async with integrated_server(dev_idp) as harness:
        assert harness.provider is not None
        client = await harness.register(f"http://127.0.0.1:{free_port()}/callback", client_name=CLIENT_NAME)
        _, challenge = pkce()
        page = await context.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        arrived = await catch_redirect(page, client)

        consent_url = await open_consent_page(page, harness, client, challenge)
        await page.get_by_role("button", name="Deny").click()

        query = await landed(page, client, arrived)
        assert query.get("error") == "access_denied", query
        assert "code" not in query
        assert query["state"] == "client-state"
        assert query["iss"] == harness.provider.issuer
        assert not [url for url in requested if url.startswith(dev_idp)]  # the browser never went to the IdP

        # The denied login is used up: the consent page for it no longer opens.
        again = await page.goto(consent_url)
        assert again is not None and again.status == 400
        assert "already used" in await page.locator("body").inner_text()


async def test_another_site_cannot_frame_the_consent_page(dev_idp: str, context: BrowserContext) -> None:
    """Clickjacking: Chromium refuses to render the consent page inside another origin's frame.

    The framing page is served for real from another loopback origin (``localhost``, not
    ``127.0.0.1``): a page answered by ``page.route`` counts as public, and Chromium's local
    network access checks would then block every loopback frame, hiding what we test.
    """
    async with integrated_server(dev_idp) as harness:
        client = await harness.register(f"http://127.0.0.1:{free_port()}/callback", client_name=CLIENT_NAME)
        _, challenge = pkce()
        authorize = await harness.http.get(harness.authorize_url(client, challenge))
        assert authorize.status_code == 302, authorize.text
        consent_url = authorize.headers["location"]
        assert consent_url.startswith(harness.base + "/consent?login=")
        control_url = harness.base + "/.well-known/oauth-authorization-server"  # no framing restriction

        markup = (
            f'<!doctype html><title>hostile</title><iframe id="consent" src="{consent_url}"></iframe>'
            f'<iframe id="control" src="{control_url}"></iframe>'
        )

        async def hostile_page(request: Request) -> HTMLResponse:
            return HTMLResponse(markup)

        hostile_port = free_port()
        hostile_app = Starlette(routes=[StarletteRoute("/", hostile_page)])
        async with serve_in_loop(hostile_app, hostile_port):
            page = await context.new_page()
            console: list[str] = []
            failed: dict[str, str | None] = {}
            page.on("console", lambda message: console.append(message.text))
            page.on("requestfailed", lambda request: failed.setdefault(request.url, request.failure))
            async with page.expect_response(lambda r: r.url == consent_url) as framed:
                await page.goto(f"http://localhost:{hostile_port}/", wait_until="load")
            framed_response = await framed.value
            assert framed_response.status == 200  # served, with its headers...
            assert (await framed_response.all_headers())["x-frame-options"] == "DENY"

            consent_frame = await (await page.query_selector("#consent")).content_frame()  # type: ignore[union-attr]
            control_frame = await (await page.query_selector("#control")).content_frame()  # type: ignore[union-attr]
            assert consent_frame is not None and control_frame is not None
            # ...but blocked by the browser: its error page in the frame, no consent form.
            assert "ERR_BLOCKED_BY_RESPONSE" in (failed.get(consent_url) or ""), failed
            assert consent_frame.url.startswith("chrome-error://"), consent_frame.url
            assert await consent_frame.locator("form").count() == 0
            assert any("frame-ancestors 'none'" in text for text in console), console
            # The control frame, from the same server, did render: frames do load here.
            assert control_frame.url == control_url
            assert harness.provider is not None
            assert harness.provider.issuer in await control_frame.locator("body").inner_text()
