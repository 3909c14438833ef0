"""Attacks on the authorization server, each named for what the attacker tries and sees.

Most tests share one server (rate limits off, so the many requests here never trip them) in
front of :class:`HostileIdP`, an IdP with a warm session: its ``/authorize`` redirects straight
back with a code, as a real IdP does for a user who is already signed in. That is the case the
consent step exists for. Tests that need other settings start their own server.

The signing key is known (``JWKS`` in the environment), so tests can forge tokens with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.metadata
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import httpx2
import pytest
import redis.asyncio as aioredis
import support.harness as harness_module
from cryptography.fernet import Fernet
from joserfc import jwt
from joserfc.jwk import KeySet
from key_value.aio.wrappers.prefix_collections import PrefixCollectionsWrapper
from mcp.shared.auth import OAuthClientMetadata
from support.harness import Client, Harness, integrated_server, pkce
from support.hostile_idp import HostileIdP
from support.net import free_port, serve_in_loop

from mcp_oidc_provider import FrozenClock, generate_jwks, store_from_url
from mcp_oidc_provider.crypto.minting import derive_client_secret
from mcp_oidc_provider.run.headless_login import consent_form
from mcp_oidc_provider.web.protection import protect

JWKS = generate_jwks("RS256")
OUR_KEY = KeySet.import_key_set(JWKS).keys[0]
HOSTILE_SECRET = "hostile-secret"
REDIRECTS = (301, 302, 303, 307, 308)
REGISTRATION_ERRORS = ("invalid_redirect_uri", "invalid_client_metadata")
REDIS_URL = "redis://127.0.0.1:6379/9"
SDK_HAS_APPLICATION_TYPE = "application_type" in OAuthClientMetadata.model_fields
MCP_MAJOR = int(importlib.metadata.version("mcp").split(".")[0])
#: RFC 6749 §5.2 says invalid_client; mcp 1.x's token handler answers unauthorized_client.
BAD_CLIENT_ERRORS = ("invalid_client",) if MCP_MAJOR >= 2 else ("invalid_client", "unauthorized_client")


# helpers: URLs and the browser


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    return parts._replace(query=urlencode({**dict(parse_qsl(parts.query)), **params})).geturl()


def same_endpoint(url: str, other: str) -> bool:
    a, b = urlsplit(url), urlsplit(other)
    return (a.scheme, a.netloc, a.path) == (b.scheme, b.netloc, b.path)


def attacker_redirect_uri() -> str:
    return f"http://127.0.0.1:{free_port()}/steal"


async def walk(browser: httpx2.AsyncClient, url: str, stop_at: str) -> tuple[str, httpx2.Response | None]:
    """Follow redirects as a browser would, without answering any page.

    Returns ``(url, None)`` when the next hop is ``stop_at`` (a client's redirect URI, where
    nothing listens), else ``(url, response)`` for the first response that is not a redirect.
    """
    for _ in range(10):
        if same_endpoint(url, stop_at):
            return url, None
        response = await browser.get(url)
        if response.status_code not in REDIRECTS:
            return url, response
        url = urljoin(url, response.headers["location"])
    raise AssertionError("too many redirects")


async def open_consent(
    server: Harness, browser: httpx2.AsyncClient, client: Client, challenge: str | None = None, **extra: str
) -> httpx2.Response:
    """/authorize, then GET the consent URL it redirects to."""
    response = await browser.get(server.authorize_url(client, challenge or pkce()[1], **extra))
    assert response.status_code == 302, response.text
    consent_url = response.headers["location"]
    assert urlsplit(consent_url).path == "/consent", consent_url
    return await browser.get(consent_url)


async def answer(browser: httpx2.AsyncClient, page: httpx2.Response, action: str = "approve") -> httpx2.Response:
    target, fields = consent_form(page.text)
    return await browser.post(target, data={**fields, "action": action})


async def callback_url(server: Harness, browser: httpx2.AsyncClient, client: Client, challenge: str) -> str:
    """The victim's way through consent and the (warm) IdP, up to our callback URL, not opened."""
    upstream = await server.to_upstream(browser, client, challenge)
    at_idp = await browser.get(upstream)
    assert at_idp.status_code == 302
    url = at_idp.headers["location"]
    assert urlsplit(url).path == "/oauth/callback", url
    return str(url)


async def login(server: Harness, client: Client, **extra: str) -> tuple[dict[str, str], str]:
    """A full login with the warm IdP: the client's redirect query and the PKCE verifier."""
    verifier, challenge = pkce()
    query = await server.follow_to_client(server.authorize_url(client, challenge, **extra), client.redirect_uri)
    return query, verifier


async def tokens_for(server: Harness, client: Client | None = None, **extra: str) -> tuple[Client, dict[str, Any]]:
    client = client or await server.register()
    query, verifier = await login(server, client, **extra)
    assert "code" in query, query
    response = await server.redeem(client, query["code"], verifier)
    assert response.status_code == 200, response.text
    return client, response.json()


def assert_no_token(response: httpx2.Response) -> None:
    assert "access_token" not in response.text
    assert "refresh_token" not in response.text


def assert_no_redirect(response: httpx2.Response) -> None:
    assert response.status_code not in REDIRECTS, response.headers.get("location")
    assert "location" not in response.headers


def assert_error_redirect(response: httpx2.Response, client: Client, error: str) -> dict[str, str]:
    """An OAuth error redirect to the client's own redirect URI, with no code and no consent."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert same_endpoint(location, client.redirect_uri), location
    query = query_of(location)
    assert query["error"] == error
    assert "code" not in query
    return query


# helpers: forging JWTs


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value).encode())


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def sign(claims: dict[str, Any], typ: str = "at+jwt") -> str:
    """A JWT signed with our real private key."""
    return jwt.encode({"alg": "RS256", "kid": OUR_KEY.kid, "typ": typ}, claims, OUR_KEY)


def hs256(claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64json({'alg': 'HS256', 'kid': OUR_KEY.kid, 'typ': 'at+jwt'})}.{b64json(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


# fixtures


@pytest.fixture(scope="module", autouse=True)
def known_signing_key() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JWKS", json.dumps(JWKS))
        mp.delenv("SECRET_KEY", raising=False)
        mp.delenv("ENCRYPTION_KEYS", raising=False)
        yield


@pytest.fixture(scope="module")
async def idp(known_signing_key: None) -> AsyncIterator[HostileIdP]:
    hostile = HostileIdP()
    port = free_port()
    hostile.issuer = f"http://127.0.0.1:{port}"
    async with serve_in_loop(hostile.app(), port):
        yield hostile


@pytest.fixture
def hostile(idp: HostileIdP) -> Iterator[HostileIdP]:
    """The module's IdP, in its honest mode; whatever a test changes is put back."""
    idp.mode, idp.authorize_error, idp.token_status, idp.time_offset = "ok", None, 200, 0.0
    yield idp
    idp.mode, idp.authorize_error, idp.token_status, idp.time_offset = "ok", None, 200, 0.0


@pytest.fixture(scope="module")
async def shared_server(idp: HostileIdP) -> AsyncIterator[Harness]:
    async with integrated_server(
        idp.issuer, client_id=idp.client_id, client_secret=HOSTILE_SECRET, rate_limit_per_minute=0
    ) as harness:
        yield harness


@pytest.fixture
def server(shared_server: Harness, hostile: HostileIdP) -> Harness:
    """Default settings (consent ``remember``), no rate limit, warm HostileIdP session."""
    return shared_server


@asynccontextmanager
async def own_server(idp: HostileIdP, **overrides: Any) -> AsyncIterator[Harness]:
    async with integrated_server(idp.issuer, client_id=idp.client_id, client_secret=HOSTILE_SECRET, **overrides) as h:
        yield h


@pytest.fixture
async def browser() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
async def attacker_browser() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


# 1. Confused deputy: a link to /authorize for the attacker's client


async def test_a_confused_deputy_link_with_a_warm_idp_session_stops_at_consent(
    server: Harness, hostile: HostileIdP, browser: httpx2.AsyncClient
) -> None:
    steal = attacker_redirect_uri()
    attacker = await server.register(steal, client_name="Totally Legit Helper")
    link = server.authorize_url(attacker, pkce()[1])
    idp_visits = len(hostile.authorize_requests)

    last_url, page = await walk(browser, link, stop_at=steal)

    assert page is not None, f"the victim's browser reached the attacker at {last_url}"
    assert page.status_code == 200
    assert urlsplit(last_url).path == "/consent"
    assert "Totally Legit Helper" in page.text
    assert urlsplit(steal).netloc in page.text  # where the code would go
    assert "code=" not in last_url
    # Not even sent to the IdP: the warm session was never used.
    assert len(hostile.authorize_requests) == idp_visits


async def test_approving_another_client_before_does_not_skip_consent_for_the_attackers_client(
    server: Harness, browser: httpx2.AsyncClient
) -> None:
    good = await server.register(client_name="Good App")
    first = await open_consent(server, browser, good)
    assert first.status_code == 200
    approved = await answer(browser, first)
    assert approved.status_code == 302
    # consent="remember": the good client now goes straight upstream in this browser...
    again = await open_consent(server, browser, good)
    assert again.status_code == 302
    assert not same_endpoint(again.headers["location"], server.base + "/consent")

    steal = attacker_redirect_uri()
    attacker = await server.register(steal, client_name="Evil App")
    last_url, page = await walk(browser, server.authorize_url(attacker, pkce()[1]), stop_at=steal)

    # ...but the attacker's client still gets the consent page.
    assert page is not None and page.status_code == 200, last_url
    assert "Evil App" in page.text


async def test_another_clients_remembered_approval_renamed_for_the_attackers_client_does_not_skip_consent(
    server: Harness, browser: httpx2.AsyncClient
) -> None:
    good = await server.register(client_name="Good App")
    approved = await answer(browser, await open_consent(server, browser, good))
    remembered = [c for c in approved.cookies.jar if c.name.startswith("mcp_oidc_consent_")]
    assert len(remembered) == 1
    steal = attacker_redirect_uri()
    attacker = await server.register(steal, client_name="Evil App")
    name = "mcp_oidc_consent_" + hashlib.sha256(attacker.client_id.encode()).hexdigest()[:16]
    browser.cookies.set(name, remembered[0].value or "", domain=remembered[0].domain, path="/")

    _, page = await walk(browser, server.authorize_url(attacker, pkce()[1]), stop_at=steal)

    assert page is not None and page.status_code == 200
    assert "Evil App" in page.text


async def test_a_get_to_consent_with_action_approve_does_not_approve(
    server: Harness, hostile: HostileIdP, browser: httpx2.AsyncClient
) -> None:
    attacker = await server.register(attacker_redirect_uri())
    response = await browser.get(server.authorize_url(attacker, pkce()[1]))
    visits = len(hostile.authorize_requests)

    page = await browser.get(response.headers["location"] + "&action=approve")

    assert page.status_code == 200
    assert "<form" in page.text
    assert len(hostile.authorize_requests) == visits


# 2. The upstream callback replayed in another browser


@pytest.mark.parametrize("attacker_cookie", ["none", "own"])
async def test_a_callback_url_replayed_in_the_attackers_browser_is_refused(
    server: Harness, browser: httpx2.AsyncClient, attacker_browser: httpx2.AsyncClient, attacker_cookie: str
) -> None:
    client = await server.register()
    stolen = await callback_url(server, browser, client, pkce()[1])
    if attacker_cookie == "own":
        # The attacker holds a binding cookie of their own, from a consent page they opened.
        page = await open_consent(server, attacker_browser, await server.register())
        assert page.status_code == 200
        assert attacker_browser.cookies.get("mcp_oidc_browser")

    response = await attacker_browser.get(stolen)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert_no_redirect(response)
    assert "code" not in response.json()
    # The victim's own browser still finishes the login.
    own = await browser.get(stolen)
    assert own.status_code == 302
    assert same_endpoint(own.headers["location"], client.redirect_uri)
    assert "code" in query_of(own.headers["location"])


async def test_a_consent_link_already_opened_by_the_attacker_is_refused_in_the_victims_browser(
    server: Harness, hostile: HostileIdP, browser: httpx2.AsyncClient, attacker_browser: httpx2.AsyncClient
) -> None:
    client = await server.register()
    started = await attacker_browser.get(server.authorize_url(client, pkce()[1]))
    consent_url = started.headers["location"]
    assert (await attacker_browser.get(consent_url)).status_code == 200  # bound to the attacker's browser
    visits = len(hostile.authorize_requests)

    response = await browser.get(consent_url)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert_no_redirect(response)
    assert len(hostile.authorize_requests) == visits


# 3. CSRF on the consent form


@pytest.mark.parametrize(
    "forgery", ["no cookie", "wrong csrf", "non-ascii csrf", "csrf of another login", "attacker's own cookie"]
)
async def test_a_forged_consent_approval_is_refused(
    server: Harness,
    hostile: HostileIdP,
    browser: httpx2.AsyncClient,
    attacker_browser: httpx2.AsyncClient,
    forgery: str,
) -> None:
    client = await server.register()
    page = await open_consent(server, browser, client)
    target, fields = consent_form(page.text)
    form = {**fields, "action": "approve"}
    poster = browser
    if forgery == "no cookie":
        poster = attacker_browser
    elif forgery == "wrong csrf":
        form["csrf"] = hmac.new(b"guess", b"guess", hashlib.sha256).hexdigest()
    elif forgery == "non-ascii csrf":
        form["csrf"] = "é" * 64
    elif forgery == "csrf of another login":
        _, other_fields = consent_form((await open_consent(server, browser, client)).text)
        assert other_fields["login"] != fields["login"]
        form["csrf"] = other_fields["csrf"]
    else:
        # The attacker's browser, its own binding cookie and the CSRF token of its own login.
        _, own_fields = consent_form((await open_consent(server, attacker_browser, client)).text)
        form["csrf"] = own_fields["csrf"]
        poster = attacker_browser
    visits = len(hostile.authorize_requests)

    response = await poster.post(target, data=form)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert_no_redirect(response)
    assert len(hostile.authorize_requests) == visits


# 4. Framing the consent page (clickjacking)


async def test_the_consent_page_cannot_be_framed_by_the_attackers_site(
    server: Harness, browser: httpx2.AsyncClient
) -> None:
    page = await open_consent(server, browser, await server.register())
    assert page.status_code == 200
    assert page.headers["x-frame-options"].upper() == "DENY"
    csp = [d.strip() for d in page.headers["content-security-policy"].split(";")]
    assert "frame-ancestors 'none'" in csp
    # Nor cached, nor leaking the login id to other sites through Referer.
    assert "no-store" in page.headers["cache-control"]
    assert page.headers["referrer-policy"] == "no-referrer"


async def test_the_browser_binding_cookie_is_out_of_reach_of_scripts_and_cross_site_posts(
    server: Harness, browser: httpx2.AsyncClient
) -> None:
    page = await open_consent(server, browser, await server.register())
    cookie = next(c for c in page.headers.get_list("set-cookie") if c.startswith("mcp_oidc_browser="))
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")[1:]}
    assert "httponly" in attributes
    assert attributes["samesite"].split("=")[1].strip().lower() in ("lax", "strict")


# 5. Deny at the consent page


async def test_a_denied_login_gives_the_client_access_denied_and_cannot_be_resumed(
    server: Harness, hostile: HostileIdP, browser: httpx2.AsyncClient
) -> None:
    client = await server.register()
    visits = len(hostile.authorize_requests)
    page = await open_consent(server, browser, client, state="xyz")
    target, fields = consent_form(page.text)

    denied = await browser.post(target, data={**fields, "action": "deny"})

    assert denied.status_code == 302
    location = denied.headers["location"]
    assert same_endpoint(location, client.redirect_uri)
    query = query_of(location)
    assert query["error"] == "access_denied"
    assert query["state"] == "xyz"
    assert query["iss"] == server.provider.issuer
    assert "code" not in query
    # The same login cannot be approved, denied again or reopened afterwards.
    for retry in (
        browser.post(target, data={**fields, "action": "approve"}),
        browser.post(target, data={**fields, "action": "deny"}),
        browser.get(f"{server.base}/consent?{urlencode({'login': fields['login']})}"),
    ):
        response = await retry
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
        assert_no_redirect(response)
    assert len(hostile.authorize_requests) == visits


# 6. Redirect URIs a client may not register


BAD_REDIRECT_URIS = {
    "javascript": ["javascript:alert(1)"],
    "data": ["data:text/html,x"],
    "file": ["file:///etc/passwd"],
    "http on a public host": ["http://evil.example/cb"],
    "fragment": ["https://ok.example/cb#frag"],
    "allowed scheme as a prefix": ["cursorx://cb"],
    "unknown scheme": ["evil://steal"],
    "allowed scheme with a suffix": ["vscode-evil://x"],
    "a good one next to a bad one": ["cursor://ok", "evil://steal"],
    "user information": ["https://user:pw@evil.example/cb"],
    "loopback as a subdomain": ["http://127.0.0.1.evil.example/cb"],
    "localhost as user information": ["http://localhost@evil.example/cb"],
    "wildcard address": ["http://0.0.0.0/cb"],
}


@pytest.mark.parametrize("uris", BAD_REDIRECT_URIS.values(), ids=BAD_REDIRECT_URIS.keys())
async def test_registering_a_dangerous_redirect_uri_is_refused(server: Harness, uris: list[str]) -> None:
    response = await server.http.post(server.base + "/register", json={"redirect_uris": uris, "client_name": "x"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] in REGISTRATION_ERRORS
    assert "client_id" not in response.json()


async def test_registering_an_https_redirect_uri_off_the_host_allow_list_is_refused(hostile: HostileIdP) -> None:
    async with own_server(hostile, allowed_redirect_hosts=("good.example",)) as server:
        bad = await server.http.post(server.base + "/register", json={"redirect_uris": ["https://evil.example/cb"]})
        good = await server.http.post(server.base + "/register", json={"redirect_uris": ["https://good.example/cb"]})
    assert bad.status_code == 400
    assert bad.json()["error"] in REGISTRATION_ERRORS
    assert "client_id" not in bad.json()
    assert good.status_code == 201


async def test_a_web_client_cannot_register_an_http_loopback_redirect_uri(server: Harness) -> None:
    body = {"redirect_uris": ["http://127.0.0.1:5000/cb"], "application_type": "web"}
    response = await server.http.post(server.base + "/register", json=body)
    if SDK_HAS_APPLICATION_TYPE:
        # SEP-837: a web client redirects to https on a real host, never to the user's machine.
        assert response.status_code == 400, response.text
        assert response.json()["error"] in REGISTRATION_ERRORS
        assert "client_id" not in response.json()
    else:
        # mcp 1.x has no application_type: the member is ignored (RFC 7591 §2), and the client is
        # registered as the native client its loopback URI makes it, never confirmed as "web".
        assert response.status_code == 201, response.text
        assert response.json().get("application_type") != "web"


# 7. Redirect URI switching at /authorize


async def test_a_loopback_client_may_use_another_port_at_authorize(
    server: Harness, browser: httpx2.AsyncClient
) -> None:
    client = await server.register("http://127.0.0.1:5000/cb")
    client.redirect_uri = "http://127.0.0.1:6001/cb"  # RFC 8252 §7.3
    page = await open_consent(server, browser, client)
    assert page.status_code == 200
    assert "127.0.0.1:6001" in page.text


SWITCHED_REDIRECTS = {
    "https port": ("https://app.example/cb", "https://app.example:8443/cb"),
    "https host": ("https://app.example/cb", "https://evil.example/cb"),
    "loopback path": ("http://127.0.0.1:5000/cb", "http://127.0.0.1:6001/other"),
    "loopback host": ("http://127.0.0.1:5000/cb", "http://localhost:6001/cb"),
    "loopback query": ("http://127.0.0.1:5000/cb", "http://127.0.0.1:6001/cb?next=evil"),
    "loopback user information": ("http://127.0.0.1:5000/cb", "http://evil@127.0.0.1:6001/cb"),
}


@pytest.mark.parametrize(("registered", "used"), SWITCHED_REDIRECTS.values(), ids=SWITCHED_REDIRECTS.keys())
async def test_a_redirect_uri_switched_at_authorize_is_refused_without_a_redirect(
    server: Harness, registered: str, used: str
) -> None:
    client = await server.register(registered)
    client.redirect_uri = used
    response = await server.http.get(server.authorize_url(client, pkce()[1]))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert_no_redirect(response)


# 8. PKCE downgrade


async def test_a_plain_pkce_challenge_is_refused_at_authorize(server: Harness) -> None:
    client = await server.register()
    verifier = secrets.token_urlsafe(32)
    response = await server.http.get(server.authorize_url(client, verifier, code_challenge_method="plain"))
    assert_error_redirect(response, client, "invalid_request")


async def test_an_authorization_request_without_a_pkce_challenge_is_refused(server: Harness) -> None:
    client = await server.register()
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "state": "s",
        "resource": server.mcp_url,
    }
    response = await server.http.get(f"{server.base}/authorize?{urlencode(query)}")
    assert_error_redirect(response, client, "invalid_request")


async def test_a_stolen_code_redeemed_without_the_code_verifier_gets_no_token(server: Harness) -> None:
    client = await server.register()
    query, _ = await login(server, client)
    for verifier in (None, ""):
        form = {"grant_type": "authorization_code", "code": query["code"], "redirect_uri": client.redirect_uri}
        if verifier is not None:
            form["code_verifier"] = verifier
        response = await server.token(client, **form)
        assert response.status_code == 400
        assert response.json()["error"] in ("invalid_request", "invalid_grant")
        assert_no_token(response)


# 9. Code replay


async def test_a_code_replayed_by_a_thief_is_refused_and_revokes_the_victims_tokens(server: Harness) -> None:
    client = await server.register()
    query, verifier = await login(server, client)
    first = await server.redeem(client, query["code"], verifier)
    assert first.status_code == 200
    tokens = first.json()
    assert (await server.mcp(tokens["access_token"])).status_code == 200

    replay = await server.redeem(client, query["code"], verifier)

    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert_no_token(replay)
    assert (await server.mcp(tokens["access_token"])).status_code == 401
    refresh = await server.token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"
    assert_no_token(refresh)


# 10. Refresh token reuse


async def test_a_refresh_token_reused_after_the_grace_window_is_refused_and_revokes_the_grant(
    hostile: HostileIdP,
) -> None:
    clock = FrozenClock()
    async with own_server(hostile, clock=clock, rate_limit_per_minute=0) as server:
        client, first = await tokens_for(server)
        rotated = await server.token(client, grant_type="refresh_token", refresh_token=first["refresh_token"])
        assert rotated.status_code == 200
        second = rotated.json()
        clock.advance(server.provider.settings.refresh_reuse_grace_seconds + 10)

        reuse = await server.token(client, grant_type="refresh_token", refresh_token=first["refresh_token"])

        assert reuse.status_code == 400
        assert reuse.json()["error"] == "invalid_grant"
        assert_no_token(reuse)
        # RFC 9700 §4.14.2: the leak revokes everything the grant issued, the newest tokens too.
        assert (await server.mcp(second["access_token"])).status_code == 401
        newest = await server.token(client, grant_type="refresh_token", refresh_token=second["refresh_token"])
        assert newest.status_code == 400
        assert newest.json()["error"] == "invalid_grant"
        assert_no_token(newest)


async def test_a_duplicate_refresh_within_the_grace_window_is_refused_but_the_grant_survives(
    hostile: HostileIdP,
) -> None:
    clock = FrozenClock()
    async with own_server(hostile, clock=clock, rate_limit_per_minute=0) as server:
        client, first = await tokens_for(server)
        rotated = await server.token(client, grant_type="refresh_token", refresh_token=first["refresh_token"])
        assert rotated.status_code == 200
        second = rotated.json()
        clock.advance(1)

        duplicate = await server.token(client, grant_type="refresh_token", refresh_token=first["refresh_token"])

        assert duplicate.status_code == 400
        assert duplicate.json()["error"] == "invalid_grant"
        assert_no_token(duplicate)
        assert (await server.mcp(second["access_token"])).status_code == 200
        onward = await server.token(client, grant_type="refresh_token", refresh_token=second["refresh_token"])
        assert onward.status_code == 200


# 11. Audience (RFC 8707)


OTHER_RESOURCE = "https://other.example/mcp"


def serve_two_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers built next serve two MCP resources: their own /mcp and OTHER_RESOURCE."""
    original = harness_module.load_env_config

    def with_two_resources(environ: dict[str, str], **kwargs: Any) -> Any:
        base = f"http://127.0.0.1:{environ['PORT']}"
        return original({**environ, "RESOURCE_URLS": f"{base}/mcp,{OTHER_RESOURCE}"}, **kwargs)

    monkeypatch.setattr(harness_module, "load_env_config", with_two_resources)


async def test_a_token_issued_for_another_resource_is_refused_at_this_mcp_server(
    hostile: HostileIdP, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_two_resources(monkeypatch)
    async with own_server(hostile) as server:
        assert server.provider.settings.resource_urls == (server.base + "/mcp", OTHER_RESOURCE)
        _, ours = await tokens_for(server)
        assert (await server.mcp(ours["access_token"])).status_code == 200

        _, theirs = await tokens_for(server, resource=OTHER_RESOURCE)
        assert claims_of(theirs["access_token"])["aud"] == OTHER_RESOURCE
        response = await server.mcp(theirs["access_token"])

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_asking_for_the_attackers_resource_at_authorize_gets_an_error_and_no_code(server: Harness) -> None:
    client = await server.register()
    response = await server.http.get(server.authorize_url(client, pkce()[1], resource="https://evil.example/mcp"))
    # RFC 8707 §2 invalid_target; mcp 1.x has no such authorize error code, so invalid_request.
    assert_error_redirect(response, client, "invalid_target" if MCP_MAJOR >= 2 else "invalid_request")


async def test_asking_for_a_resource_we_do_not_serve_at_token_gets_invalid_target_and_no_token(
    server: Harness,
) -> None:
    client = await server.register()
    query, verifier = await login(server, client)
    response = await server.redeem_with(client, query["code"], verifier, resource="https://evil.example/mcp")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
    assert_no_token(response)
    # The code was not spent on the refused request: the genuine redemption still works.
    assert (await server.redeem(client, query["code"], verifier)).status_code == 200


async def test_switching_to_another_served_resource_at_token_is_refused(
    hostile: HostileIdP, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_two_resources(monkeypatch)
    async with own_server(hostile) as server:
        client, tokens = await tokens_for(server)  # authorized for this server's /mcp
        switched = await server.token(
            client, grant_type="refresh_token", refresh_token=tokens["refresh_token"], resource=OTHER_RESOURCE
        )
        same = await server.token(
            client, grant_type="refresh_token", refresh_token=tokens["refresh_token"], resource=server.mcp_url
        )
    # RFC 8707 §2.2: only a resource the grant was authorized for (1.x: nearest code).
    assert switched.status_code == 400
    assert switched.json()["error"] == ("invalid_target" if MCP_MAJOR >= 2 else "invalid_request")
    assert_no_token(switched)
    assert same.status_code == 200, same.text
    assert claims_of(same.json()["access_token"])["aud"] == server.mcp_url


# 12-14. Forged and misused bearer tokens


async def test_an_id_token_signed_with_our_key_is_refused_as_an_access_token(server: Harness) -> None:
    client, tokens = await tokens_for(server)
    claims = claims_of(tokens["access_token"])
    assert (await server.mcp(sign(claims))).status_code == 200  # the forgery kit works
    id_token_claims = {**claims, "aud": client.client_id, "nonce": "n", "auth_time": claims["iat"]}

    for token in (sign(id_token_claims, typ="JWT"), sign({**claims, "nonce": "n"}, typ="JWT")):
        response = await server.mcp(token)
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_the_idps_real_id_token_is_refused_as_an_access_token(server: Harness, hostile: HostileIdP) -> None:
    await tokens_for(server)
    id_tokens = [issued["id_token"] for issued in hostile.issued if "id_token" in issued]
    assert id_tokens
    response = await server.mcp(id_tokens[-1])
    assert response.status_code == 401
    fresh = await server.mcp(hostile.id_token("n"))
    assert fresh.status_code == 401


async def test_an_unsigned_alg_none_token_with_our_claims_is_refused(server: Harness) -> None:
    _, tokens = await tokens_for(server)
    claims = claims_of(tokens["access_token"])
    for header in ({"alg": "none", "typ": "at+jwt"}, {"alg": "none", "kid": OUR_KEY.kid, "typ": "at+jwt"}):
        response = await server.mcp(f"{b64json(header)}.{b64json(claims)}.")
        assert response.status_code == 401


def _public_jwk() -> dict[str, Any]:
    return {k: v for k, v in OUR_KEY.as_dict(private=False).items() if k not in ("d", "p", "q", "dp", "dq", "qi")}


HMAC_SECRETS = {
    "public key PEM": lambda: OUR_KEY.as_pem(private=False),
    "JWK n as text": lambda: _public_jwk()["n"].encode(),
    "JWK n as bytes": lambda: base64.urlsafe_b64decode(_public_jwk()["n"] + "=="),
    "public JWK JSON": lambda: json.dumps(_public_jwk()).encode(),
}


@pytest.mark.parametrize("secret", HMAC_SECRETS.values(), ids=HMAC_SECRETS.keys())
async def test_an_hs256_token_keyed_with_our_public_key_is_refused(server: Harness, secret: Any) -> None:
    _, tokens = await tokens_for(server)
    response = await server.mcp(hs256(claims_of(tokens["access_token"]), secret()))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_an_expired_token_signed_with_our_key_is_refused(server: Harness) -> None:
    _, tokens = await tokens_for(server)
    now = int(time.time())
    claims = {**claims_of(tokens["access_token"]), "iat": now - 7200, "nbf": now - 7200, "exp": now - 60}
    response = await server.mcp(sign(claims))
    assert response.status_code == 401


@pytest.mark.parametrize("claim", ["nbf", "iat"])
async def test_a_token_valid_only_an_hour_from_now_is_refused(server: Harness, claim: str) -> None:
    _, tokens = await tokens_for(server)
    later = int(time.time()) + 3600
    claims = {**claims_of(tokens["access_token"]), "exp": later + 3600}
    claims.pop("nbf")
    claims[claim] = later
    if claim == "nbf":
        claims["iat"] = later
    response = await server.mcp(sign(claims))
    assert response.status_code == 401


# 15. The upstream leg


async def test_a_tampered_upstream_state_gets_invalid_request_and_no_code(
    server: Harness, browser: httpx2.AsyncClient
) -> None:
    client = await server.register()
    stolen = await callback_url(server, browser, client, pkce()[1])
    state = query_of(stolen)["state"]
    flipped = state[:-1] + ("A" if state[-1] != "A" else "B")
    for forged_state in (flipped, state + "x", state[:20]):
        response = await browser.get(with_query(stolen, state=forged_state))
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
        assert_no_redirect(response)


async def test_a_forged_callback_with_an_invented_state_gets_invalid_request(
    server: Harness, attacker_browser: httpx2.AsyncClient
) -> None:
    await open_consent(server, attacker_browser, await server.register())  # holds a binding cookie
    url = f"{server.base}/oauth/callback?{urlencode({'code': 'attacker-code', 'state': secrets.token_urlsafe(32)})}"
    response = await attacker_browser.get(url)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert_no_redirect(response)


async def test_an_id_token_with_the_wrong_nonce_gives_the_client_server_error_and_no_code(
    server: Harness, hostile: HostileIdP
) -> None:
    hostile.mode = "wrong_nonce"
    client = await server.register()
    query, _ = await login(server, client, state="st")
    assert query.get("error") == "server_error", query
    assert "code" not in query
    assert query["state"] == "st"
    assert query["iss"] == server.provider.issuer  # RFC 9207: mix-up defence on errors too


async def test_extra_parameters_on_the_callback_cannot_redirect_the_code_elsewhere(
    server: Harness, browser: httpx2.AsyncClient
) -> None:
    client = await server.register()
    stolen = await callback_url(server, browser, client, pkce()[1])
    evil = attacker_redirect_uri()
    response = await browser.get(stolen + "&" + urlencode({"redirect_uri": evil, "iss": "https://evil.example"}))
    assert response.status_code == 302
    location = response.headers["location"]
    assert same_endpoint(location, client.redirect_uri)
    assert not location.startswith(evil)
    assert query_of(location)["iss"] == server.provider.issuer


# 16. Registration bodies


async def test_an_oversized_registration_body_gets_413(server: Harness) -> None:
    body = {"redirect_uris": ["http://127.0.0.1:5000/cb"], "client_name": "x" * 200_000}
    response = await server.http.post(server.base + "/register", json=body)
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"
    assert "client_id" not in response.text


async def test_an_oversized_chunked_registration_body_without_content_length_gets_413(server: Harness) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"redirect_uris": ["http://127.0.0.1:5000/cb"], "client_name": "'
        for _ in range(50):
            yield b"x" * 4096
        yield b'"}'

    response = await server.http.post(
        server.base + "/register", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"
    assert "client_id" not in response.text


MALFORMED_REGISTRATIONS = {
    "not JSON": b"redirect_uris=http://127.0.0.1/cb",
    "a JSON array": b'["http://127.0.0.1:5000/cb"]',
    "redirect_uris not a list": b'{"redirect_uris": "http://127.0.0.1:5000/cb"}',
    "redirect_uris of numbers": b'{"redirect_uris": [1, 2]}',
    "10,000 redirect URIs": json.dumps({"redirect_uris": ["a:"] * 10_000}).encode(),
    "deeply nested": b'{"redirect_uris": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "not UTF-8": b'{"redirect_uris": ["http://127.0.0.1/\xff\xfe"]}',
    "empty": b"",
}


@pytest.mark.parametrize("body", MALFORMED_REGISTRATIONS.values(), ids=MALFORMED_REGISTRATIONS.keys())
async def test_a_malformed_registration_body_gets_an_rfc_7591_error_and_never_a_500(
    server: Harness, body: bytes
) -> None:
    assert len(body) <= server.provider.settings.max_body_bytes
    response = await server.http.post(
        server.base + "/register", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] in REGISTRATION_ERRORS
    assert "client_id" not in response.json()


# 17. Flooding


async def test_the_sixth_registration_in_a_minute_from_one_address_gets_429(hostile: HostileIdP) -> None:
    async with own_server(hostile, rate_limit_per_minute=5) as server:
        body = {"redirect_uris": ["http://127.0.0.1:5000/cb"]}
        statuses = [(await server.http.post(server.base + "/register", json=body)).status_code for _ in range(5)]
        sixth = await server.http.post(server.base + "/register", json=body)
    assert statuses == [201] * 5
    assert sixth.status_code == 429
    assert sixth.json()["error"] == "temporarily_unavailable"
    assert int(sixth.headers["retry-after"]) >= 1
    assert "client_id" not in sixth.json()


async def test_flooding_authorize_from_one_address_gets_429_and_no_login(hostile: HostileIdP) -> None:
    async with own_server(hostile, rate_limit_per_minute=5) as server:
        client = await server.register()  # /register has a budget of its own (issue 8 §4)
        url = server.authorize_url(client, pkce()[1])
        statuses = [(await server.http.get(url)).status_code for _ in range(5)]
        flooded = await server.http.get(url)
    assert statuses == [302] * 5
    assert flooded.status_code == 429
    assert flooded.json()["error"] == "temporarily_unavailable"
    assert int(flooded.headers["retry-after"]) >= 1
    assert_no_redirect(flooded)


async def test_rotating_x_forwarded_for_does_not_evade_the_rate_limit(server: Harness) -> None:
    # At the guard itself: over real HTTP the test client is always on loopback, so only an
    # ASGI call can play a remote attacker with an address of its own.
    settings = server.provider.settings.model_copy(update={"rate_limit_per_minute": 5})
    assert not settings.trust_forwarded_for

    async def registered(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = protect(registered, settings, server.provider.issuer)
    statuses = []
    for i in range(8):
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/register",
            "client": ("198.51.100.7", 40000 + i),
            "headers": [(b"x-forwarded-for", f"203.0.113.{i}".encode()), (b"content-length", b"2")],
        }
        await guard(scope, receive, send)
        statuses.append(sent[0]["status"])
    assert statuses == [201] * 5 + [429] * 3


# 18. A dump of the store


@pytest.fixture
async def redis_store() -> AsyncIterator[tuple[Any, aioredis.Redis, str]]:
    """Redis db 9, our collections under a unique prefix; only those keys are deleted afterwards."""
    raw = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    prefix = f"test-attacks-{uuid.uuid4().hex}"
    base = store_from_url(REDIS_URL)
    try:
        yield PrefixCollectionsWrapper(base, prefix), raw, prefix
    finally:
        async for key in raw.scan_iter(match=f"{prefix}__*"):
            await raw.delete(key)
        await raw.aclose()
        await base.close()  # type: ignore[attr-defined]


async def secrets_of_every_kind(server: Harness, hostile: HostileIdP) -> tuple[Client, str, dict[str, str]]:
    """A login redeemed and refreshed, a code never redeemed, a login left at the IdP: every
    secret they produced, by name; plus the client and a PKCE verifier."""
    issued_before = len(hostile.issued)
    client = await server.register()
    assert client.client_secret
    query, verifier = await login(server, client)
    first = (await server.redeem(client, query["code"], verifier)).json()
    refreshed = await server.token(client, grant_type="refresh_token", refresh_token=first["refresh_token"])
    second = refreshed.json()
    pending, _ = await login(server, client)
    async with httpx2.AsyncClient(timeout=10) as browser:
        upstream = await server.to_upstream(browser, client, pkce()[1])
        binding_cookie = browser.cookies["mcp_oidc_browser"]
    found = {
        "client secret": client.client_secret,
        "redeemed code": query["code"],
        "pending code": pending["code"],
        "first access token": first["access_token"],
        "first refresh token": first["refresh_token"],
        "access token": second["access_token"],
        "refresh token": second["refresh_token"],
        "upstream state": query_of(upstream)["state"],
        "browser binding cookie": binding_cookie,
        "user's e-mail": "mallory@example.test",
    }
    for member in ("d", "p", "q", "dp", "dq", "qi"):
        found[f"private key {member}"] = JWKS["keys"][0][member]
    upstream_issued = hostile.issued[issued_before:]
    assert len(upstream_issued) == 2  # one token response per finished login
    for n, issued in enumerate(upstream_issued):
        for name in ("access_token", "refresh_token", "id_token"):
            if name in issued:
                found[f"upstream {name} #{n}"] = issued[name]
        if "id_token" in issued:
            found[f"upstream ID token claims #{n}"] = issued["id_token"].split(".")[1]
    return client, verifier, found


def string_leaves(value: Any) -> Iterator[str]:
    """Every string in a stored value, looking inside JSON held in strings."""
    if isinstance(value, str):
        yield value
        try:
            inner = json.loads(value)
        except ValueError:
            return
        if not isinstance(inner, str):
            yield from string_leaves(inner)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from string_leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from string_leaves(v)


def base64_decodings(text: str) -> Iterator[bytes]:
    for decode in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            yield decode(text + "=" * (-len(text) % 4))
        except ValueError:
            pass


async def test_a_dump_of_the_store_holds_no_usable_secret(
    hostile: HostileIdP, redis_store: tuple[Any, aioredis.Redis, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, raw, prefix = redis_store
    secret_key = b64url(secrets.token_bytes(32))
    encryption_key = Fernet.generate_key().decode()
    monkeypatch.setenv("SECRET_KEY", secret_key)
    monkeypatch.setenv("ENCRYPTION_KEYS", encryption_key)
    async with own_server(hostile, store=store) as server:
        client, verifier, in_play = await secrets_of_every_kind(server, hostile)
        in_play["SECRET_KEY"] = secret_key
        in_play["SECRET_KEY, standard base64"] = base64.b64encode(base64.urlsafe_b64decode(secret_key + "=")).decode()
        in_play["encryption key"] = encryption_key
        dump = {key: await raw.get(key) async for key in raw.scan_iter(match=f"{prefix}__*")}
        assert any("mcp-oidc-grants" in key for key in dump)

        everything = "\n".join(f"{key}\n{value}" for key, value in dump.items())
        assert sorted(name for name, value in in_play.items() if value in everything) == []

        # Nothing stored derives the client's secret: the secret seed must not be in the store.
        issued_at = int(client.raw["client_id_issued_at"])
        candidates = {
            decoded
            for value in dump.values()
            for leaf in string_leaves(value)
            for decoded in base64_decodings(leaf)
            if len(decoded) >= 16
        }
        derivable = [
            c for c in candidates if derive_client_secret(c, client.client_id, issued_at) == client.client_secret
        ]
        assert derivable == [], "the store holds the seed every client secret derives from"

        # The names records are stored under are useless as what they name.
        for key in dump:
            name = key.partition("::")[2]
            as_refresh_token = await server.token(client, grant_type="refresh_token", refresh_token=name)
            as_code = await server.redeem(client, name, verifier)
            for response in (as_refresh_token, as_code):
                assert response.status_code == 400
                assert_no_token(response)
            assert (await server.mcp(name)).status_code == 401


# 19. Client authentication


async def test_another_clients_secret_is_refused_as_invalid_client(server: Harness) -> None:
    victim, attacker = await server.register(), await server.register()
    query, verifier = await login(server, victim)
    assert victim.client_secret and attacker.client_secret
    forged = Client(victim.client_id, attacker.client_secret, victim.redirect_uri)

    response = await server.redeem(forged, query["code"], verifier)

    assert response.status_code == 401
    assert response.json()["error"] in BAD_CLIENT_ERRORS
    assert_no_token(response)


async def test_client_secret_basic_with_a_mismatched_client_id_is_refused_as_invalid_client(server: Harness) -> None:
    victim = await server.register(token_endpoint_auth_method="client_secret_basic")
    attacker = await server.register(token_endpoint_auth_method="client_secret_basic")
    query, verifier = await login(server, victim)
    assert attacker.client_secret
    basic = base64.b64encode(f"{attacker.client_id}:{attacker.client_secret}".encode()).decode()
    form = {
        "grant_type": "authorization_code",
        "client_id": victim.client_id,
        "code": query["code"],
        "code_verifier": verifier,
        "redirect_uri": victim.redirect_uri,
    }

    response = await server.http.post(server.base + "/token", data=form, headers={"Authorization": f"Basic {basic}"})

    assert response.status_code == 401
    assert response.json()["error"] in BAD_CLIENT_ERRORS
    assert_no_token(response)


async def test_a_stolen_refresh_token_used_by_another_client_gets_no_token(server: Harness) -> None:
    _, tokens = await tokens_for(server)
    thief = await server.register()
    response = await server.token(thief, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert_no_token(response)


async def test_another_client_cannot_revoke_the_victims_token(server: Harness) -> None:
    _, tokens = await tokens_for(server)
    attacker = await server.register()
    assert attacker.client_secret
    for token in (tokens["access_token"], tokens["refresh_token"]):
        await server.http.post(
            server.base + "/revoke",
            data={"client_id": attacker.client_id, "client_secret": attacker.client_secret, "token": token},
        )
    assert (await server.mcp(tokens["access_token"])).status_code == 200


# 20. Injection into the consent page


async def test_a_malicious_client_name_is_escaped_on_the_consent_page(
    server: Harness, browser: httpx2.AsyncClient
) -> None:
    name = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    client = await server.register(client_name=name)
    page = await open_consent(server, browser, client)
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "<img" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert page.headers["content-type"].startswith("text/html")


# Scopes


async def test_asking_for_a_scope_the_server_does_not_offer_gets_invalid_scope_and_no_code(server: Harness) -> None:
    client = await server.register()
    response = await server.http.get(server.authorize_url(client, pkce()[1], scope="mcp admin"))
    assert_error_redirect(response, client, "invalid_scope")


AUTHORIZE_ERRORS = {
    "plain PKCE": {"code_challenge_method": "plain"},
    "malformed challenge": {"code_challenge": "short"},
    "unknown scope": {"scope": "mcp admin"},
    "foreign resource": {"resource": "https://evil.example/mcp"},
}


@pytest.mark.parametrize("params", AUTHORIZE_ERRORS.values(), ids=AUTHORIZE_ERRORS.keys())
async def test_every_error_redirect_from_authorize_names_our_issuer_against_mix_up(
    server: Harness, params: dict[str, str]
) -> None:
    # RFC 9207 §2: iss on every authorization response, errors included; our discovery document
    # advertises authorization_response_iss_parameter_supported, so clients reject one without it.
    discovery = (await server.http.get(server.base + "/.well-known/openid-configuration")).json()
    assert discovery["authorization_response_iss_parameter_supported"] is True
    client = await server.register()
    response = await server.http.get(server.authorize_url(client, pkce()[1], state="st", **params))
    assert response.status_code == 302
    query = query_of(response.headers["location"])
    assert "error" in query and "code" not in query
    assert query["state"] == "st"
    assert query.get("iss") == server.provider.issuer


async def test_behind_a_trusted_proxy_a_forged_x_forwarded_for_prefix_does_not_evade_the_rate_limit(
    server: Harness,
) -> None:
    # The proxy appends the real address on the right; what the client sent stands to its left.
    settings = server.provider.settings.model_copy(update={"rate_limit_per_minute": 3, "trust_forwarded_for": True})

    async def registered(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = protect(registered, settings, server.provider.issuer)
    statuses = []
    for i in range(5):
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
            sent.append(message)

        forged = f"203.0.113.{i}, 198.51.100.7".encode()
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/register",
            "client": ("10.0.0.1", 40000 + i),
            "headers": [(b"x-forwarded-for", forged), (b"content-length", b"2")],
        }
        await guard(scope, receive, send)
        statuses.append(sent[0]["status"])
    assert statuses == [201] * 3 + [429] * 2


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("GET", "/consent", None),
        ("GET", "/consent?login=" + "x" * 5000, None),
        ("GET", "/consent?login=%00%ff", None),
        ("POST", "/consent", b"\xff\xfe not a form"),
        ("POST", "/consent", b"login=" + b"a" * 3000 + b"&csrf=x&action=approve"),
        ("POST", "/consent", b"action=approve"),
        ("GET", "/oauth/callback", None),
        ("GET", "/oauth/callback?state=" + "s" * 5000 + "&code=c", None),
        ("GET", "/oauth/callback?error=access_denied", None),
    ],
)
async def test_malformed_consent_and_callback_requests_get_a_400_oauth_error_never_a_500(
    server: Harness, method: str, target: str, body: bytes | None
) -> None:
    headers = {"content-type": "application/x-www-form-urlencoded"} if body is not None else {}
    response = await server.http.request(method, server.base + target, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert_no_redirect(response)


async def test_a_bearer_token_with_a_deeply_nested_header_gets_401_not_an_outage_503(server: Harness) -> None:
    import base64

    header = base64.urlsafe_b64encode(b"[" * 6000 + b"]" * 6000).decode().rstrip("=")
    response = await server.mcp(f"{header}.e30.sig")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
