"""Consent covers exactly what the user saw (issue 8 §2, and §5's consent items).

Each bypass is attempted as an attacker would, over real HTTP on loopback, against a server in
front of :class:`HostileIdP` (a warm IdP session: its /authorize redirects straight back with a
code, the case consent exists for). Cookie tossing (a sibling subdomain or another port setting
cookies for our host) is simulated by planting cookies in the victim's cookie jar; a store
reader or writer is simulated through the server's own store object.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import httpx2
import pytest
import support.harness as harness_module
from support.harness import Client, Harness, integrated_server, pkce
from support.hostile_idp import HostileIdP
from support.net import free_port, serve_in_loop

from mcp_oidc_provider import FrozenClock
from mcp_oidc_provider.core.settings import StaticClient
from mcp_oidc_provider.flows.consent import BINDING_COOKIE, REMEMBER_COOKIE_PREFIX
from mcp_oidc_provider.run.headless_login import consent_form
from mcp_oidc_provider.store.records import LoginApproval
from mcp_oidc_provider.store.repository import Repository

SECRET = "hostile-secret"
OTHER_RESOURCE = "https://other.example/mcp"
SCOPES = ("mcp", "read", "write")
REDIRECTS = (301, 302, 303, 307, 308)
THIRTY_DAYS = 30 * 86400


# helpers


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def same_endpoint(url: str, other: str) -> bool:
    a, b = urlsplit(url), urlsplit(other)
    return (a.scheme, a.netloc, a.path) == (b.scheme, b.netloc, b.path)


def loopback_uri(path: str = "/callback") -> str:
    return f"http://127.0.0.1:{free_port()}{path}"


def remember_name(client: Client) -> str:
    return REMEMBER_COOKIE_PREFIX + hashlib.sha256(client.client_id.encode()).hexdigest()[:16]


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


async def consent_url(server: Harness, browser: httpx2.AsyncClient, client: Client, **extra: str) -> str:
    response = await browser.get(server.authorize_url(client, pkce()[1], **extra))
    assert response.status_code == 302, response.text
    url = str(response.headers["location"])
    assert urlsplit(url).path == "/consent", url
    return url


async def open_consent(server: Harness, browser: httpx2.AsyncClient, client: Client, **extra: str) -> httpx2.Response:
    """/authorize, then GET the consent URL it redirects to."""
    return await browser.get(await consent_url(server, browser, client, **extra))


async def approve(browser: httpx2.AsyncClient, page: httpx2.Response) -> httpx2.Response:
    target, fields = consent_form(page.text)
    response = await browser.post(target, data={**fields, "action": "approve"})
    assert response.status_code == 302, response.text
    return response


def asks_consent(response: httpx2.Response) -> bool:
    """The consent page itself, as opposed to a redirect past it."""
    return response.status_code == 200 and "<form" in response.text and "Allow access?" in response.text


def went_upstream(response: httpx2.Response, idp: HostileIdP) -> bool:
    return response.status_code == 302 and response.headers["location"].startswith(idp.issuer + "/authorize")


async def finish(browser: httpx2.AsyncClient, upstream_url: str) -> httpx2.Response:
    """The victim's browser from the (warm) IdP through our callback; the callback's response."""
    at_idp = await browser.get(upstream_url)
    assert at_idp.status_code == 302
    callback = str(at_idp.headers["location"])
    assert urlsplit(callback).path == "/oauth/callback", callback
    return await browser.get(callback)


def assert_refused_without_code(response: httpx2.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert "location" not in response.headers
    assert "code" not in response.json()


# fixtures


@pytest.fixture(scope="module")
async def idp() -> AsyncIterator[HostileIdP]:
    hostile = HostileIdP()
    port = free_port()
    hostile.issuer = f"http://127.0.0.1:{port}"
    async with serve_in_loop(hostile.app(), port):
        yield hostile


@asynccontextmanager
async def consent_server(idp: HostileIdP, base_url: str | None = None, **overrides: Any) -> AsyncIterator[Harness]:
    """A server with two MCP resources (its own /mcp and OTHER_RESOURCE) and three scopes."""
    original = harness_module.load_env_config

    def with_two_resources(environ: dict[str, str], **kwargs: Any) -> Any:
        base = f"http://127.0.0.1:{environ['PORT']}"
        extra = {"RESOURCE_URLS": f"{base}/mcp,{OTHER_RESOURCE}"}
        if base_url is not None:
            extra["BASE_URL"] = base_url.replace("PORT", environ["PORT"])
        return original({**environ, **extra}, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(harness_module, "load_env_config", with_two_resources)
        settings: dict[str, Any] = {"rate_limit_per_minute": 0, "scopes": SCOPES, **overrides}
        async with integrated_server(idp.issuer, client_id=idp.client_id, client_secret=SECRET, **settings) as h:
            yield h


@pytest.fixture(scope="module")
async def server(idp: HostileIdP) -> AsyncIterator[Harness]:
    async with consent_server(idp) as harness:
        yield harness


@pytest.fixture
async def browser() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
async def attacker_browser() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def repo(server: Harness) -> Iterator[Repository]:
    """Direct access to the server's store, as an attacker who can read and write it has."""
    assert server.store is not None
    yield Repository(server.store)


# 1. What the page shows


async def test_the_consent_page_shows_the_full_redirect_uri_the_resource_our_scopes_and_the_idp_scopes(
    server: Harness, idp: HostileIdP, browser: httpx2.AsyncClient
) -> None:
    redirect_uri = loopback_uri("/oauth/a/long/callback/path")
    client = await server.register(redirect_uri, client_name="Shown App")

    page = await open_consent(server, browser, client, scope="mcp read", resource=OTHER_RESOURCE)

    assert asks_consent(page)
    assert html.escape(redirect_uri) in page.text  # the full URI, not only its host
    assert OTHER_RESOURCE in page.text
    for scope in ("mcp", "read"):
        assert f"<code>{scope}</code>" in page.text
    assert "<code>write</code>" not in page.text
    for upstream_scope in server.provider.settings.upstream.scopes:  # type: ignore[union-attr]
        assert f"<code>{upstream_scope}</code>" in page.text
    assert "Verified domain" not in page.text  # a registered client has none


async def test_a_client_name_loses_bidi_and_control_characters_and_is_capped_on_the_consent_page(
    server: Harness, browser: httpx2.AsyncClient
) -> None:
    # Registration refuses names over 100 characters once cleaned (test_bounded_resources).
    name = "Good\u202eppA\u2066\u200b\x00\x1b[31m Tool " + "x" * 80
    client = await server.register(client_name=name)

    page = await open_consent(server, browser, client)

    assert asks_consent(page)
    heading = page.text.split("<h1>", 1)[1].split("</h1>", 1)[0]
    for character in ("\u202e", "\u2066", "\u200b", "\x00", "\x1b"):
        assert character not in page.text
    assert "GoodppA[31m Tool x" in heading
    assert len(heading) < 200


async def test_a_cimd_client_shows_its_verified_domain_apart_from_its_self_asserted_name(
    idp: HostileIdP, browser: httpx2.AsyncClient
) -> None:
    client_id = "https://tools.example.com/oauth/client.json"
    redirect_uri = loopback_uri()
    static = StaticClient(client_id=client_id, redirect_uris=(redirect_uri,), client_name="Microsoft Office")
    async with consent_server(idp, static_clients=(static,)) as server:
        client = Client(client_id, None, redirect_uri)

        page = await open_consent(server, browser, client)

    assert asks_consent(page)
    assert "Verified domain: <strong>tools.example.com</strong>" in page.text
    assert "Microsoft Office" in page.text


async def test_the_consent_page_may_post_only_to_us_the_idp_and_the_clients_redirect_uri(
    server: Harness, idp: HostileIdP, browser: httpx2.AsyncClient
) -> None:
    client = await server.register()
    page = await open_consent(server, browser, client)
    directives = {d.strip().split(" ")[0]: d.strip() for d in page.headers["content-security-policy"].split(";")}
    sources = directives["form-action"].split()[1:]
    # Chromium applies form-action to the redirects after the POST as well.
    assert sorted(sources) == sorted(
        ["'self'", server.base, idp.issuer, f"http://{urlsplit(client.redirect_uri).netloc}"]
    )


# 2. A remembered approval stands only for what was approved


async def test_a_remembered_approval_covers_the_same_request_and_a_narrower_scope(
    server: Harness, idp: HostileIdP, browser: httpx2.AsyncClient
) -> None:
    client = await server.register()
    await approve(browser, await open_consent(server, browser, client, scope="mcp read"))

    assert went_upstream(await open_consent(server, browser, client, scope="mcp read"), idp)
    assert went_upstream(await open_consent(server, browser, client, scope="mcp"), idp)


async def test_a_remembered_approval_does_not_cover_a_second_redirect_uri_of_the_same_client(
    server: Harness, idp: HostileIdP, browser: httpx2.AsyncClient
) -> None:
    loopback, steal = loopback_uri(), "https://attacker.example/steal"
    client = await server.register(loopback, redirect_uris=[loopback, steal], client_name="Two Faced")
    await approve(browser, await open_consent(server, browser, client))
    visits = len(idp.authorize_requests)

    page = await open_consent(server, browser, client, redirect_uri=steal)

    assert asks_consent(page)
    assert html.escape(steal) in page.text
    assert len(idp.authorize_requests) == visits


async def test_a_remembered_approval_does_not_cover_a_wider_scope(server: Harness, browser: httpx2.AsyncClient) -> None:
    client = await server.register()
    await approve(browser, await open_consent(server, browser, client, scope="mcp"))

    page = await open_consent(server, browser, client, scope="mcp read write")

    assert asks_consent(page)
    assert "<code>write</code>" in page.text


async def test_a_remembered_approval_does_not_cover_another_resource(
    server: Harness, browser: httpx2.AsyncClient
) -> None:
    client = await server.register()
    await approve(browser, await open_consent(server, browser, client))  # resource: server.base/mcp

    page = await open_consent(server, browser, client, resource=OTHER_RESOURCE)

    assert asks_consent(page)
    assert OTHER_RESOURCE in page.text


async def test_a_remembered_approval_rewritten_in_the_store_to_cover_more_does_not_skip_consent(
    server: Harness, idp: HostileIdP, browser: httpx2.AsyncClient
) -> None:
    loopback, steal = loopback_uri(), "https://attacker.example/steal"
    client = await server.register(loopback, redirect_uris=[loopback, steal])
    await approve(browser, await open_consent(server, browser, client, scope="mcp"))
    assert went_upstream(await open_consent(server, browser, client, scope="mcp"), idp)  # the record works
    assert server.store is not None
    collection = "mcp-oidc-consent-approvals"
    keys = await server.store.keys(collection)  # type: ignore[attr-defined]
    assert keys
    for key in keys:  # a store writer widens every approval, keeping its MAC
        record = await server.store.get(key, collection=collection)
        assert record is not None
        record.update(scopes=list(SCOPES), redirect_uri=steal)
        await server.store.put(key, record, collection=collection, ttl=3600)

    page = await open_consent(server, browser, client, scope="mcp read write", redirect_uri=steal)

    assert asks_consent(page)
    # Nor does the original request pass any more: the record no longer verifies.
    assert asks_consent(await open_consent(server, browser, client, scope="mcp"))


# 3. Cookie tossing: cookies planted in the victim's browser


async def test_a_planted_binding_cookie_that_does_not_verify_is_replaced_by_one_the_server_minted(
    server: Harness, browser: httpx2.AsyncClient, attacker_browser: httpx2.AsyncClient
) -> None:
    planted = "attacker-chosen-binding"
    browser.cookies.set(BINDING_COOKIE, planted, domain="127.0.0.1", path="/")
    attacker_browser.cookies.set(BINDING_COOKIE, planted, domain="127.0.0.1", path="/")
    client = await server.register()
    url = await consent_url(server, attacker_browser, client)  # the attacker's link

    page = await browser.get(url)

    assert asks_consent(page)
    minted = next(c for c in page.headers.get_list("set-cookie") if c.startswith(BINDING_COOKIE + "="))
    value = minted.split(";")[0].split("=", 1)[1]
    assert value != planted and len(value.split(".")) == 2
    # The attacker, holding the planted value, owns nothing: neither the page nor the approval.
    assert (await attacker_browser.get(url)).status_code == 400
    target, fields = consent_form(page.text)
    forged = await attacker_browser.post(target, data={**fields, "action": "approve"})
    assert_refused_without_code(forged)


async def test_a_remember_cookie_planted_from_the_attackers_browser_does_not_skip_consent(
    server: Harness, idp: HostileIdP, browser: httpx2.AsyncClient, attacker_browser: httpx2.AsyncClient
) -> None:
    steal = loopback_uri("/steal")
    attacker = await server.register(steal, client_name="Evil App")
    await approve(attacker_browser, await open_consent(server, attacker_browser, attacker))
    remember = attacker_browser.cookies.get(remember_name(attacker))
    assert remember
    browser.cookies.set(remember_name(attacker), remember, domain="127.0.0.1", path="/")
    visits = len(idp.authorize_requests)

    page = await open_consent(server, browser, attacker)

    assert asks_consent(page)
    assert "Evil App" in page.text
    assert len(idp.authorize_requests) == visits


@pytest.mark.parametrize("consent", ["always", "remember"])
async def test_a_planted_binding_and_remember_cookie_pair_still_asks_for_consent_in_the_victims_browser(
    idp: HostileIdP, browser: httpx2.AsyncClient, attacker_browser: httpx2.AsyncClient, consent: str
) -> None:
    # The attacker copies their whole cookie jar (binding and remember cookies) into the victim's
    # browser: on a loopback http issuer nothing stops the copy itself (https issuers use __Host-
    # names, below), but with consent="always" the page is still shown, and with "remember" the
    # approval covers the attacker's earlier request only, not a new login for the victim to finish.
    async with consent_server(idp, consent=consent) as server:
        attacker = await server.register(loopback_uri("/steal"), client_name="Evil App")
        await approve(attacker_browser, await open_consent(server, attacker_browser, attacker, scope="mcp"))
        for cookie in attacker_browser.cookies.jar:
            browser.cookies.set(cookie.name, cookie.value or "", domain="127.0.0.1", path="/")

        page = await open_consent(server, browser, attacker, scope="mcp read")

    assert asks_consent(page)


@pytest.mark.parametrize(
    "value",
    ["9" * 5000, "9" * 5000 + "." + "a" * 64, "." * 3000, "\u00e9" * 100],
    ids=["thousands of digits", "old format with thousands of digits", "dots", "non-ASCII"],
)
async def test_a_malformed_remember_or_binding_cookie_is_ignored_never_a_500(
    server: Harness, browser: httpx2.AsyncClient, value: str
) -> None:
    client = await server.register()
    header = f"{remember_name(client)}={value}; {BINDING_COOKIE}={value}".encode()  # raw UTF-8 bytes
    url = await consent_url(server, browser, client)

    page = await browser.get(url, headers={"cookie": header})

    assert page.status_code == 200, page.text  # the consent page, with a fresh binding
    assert asks_consent(page)
    assert any(c.startswith(BINDING_COOKIE + "=") for c in page.headers.get_list("set-cookie"))


async def test_on_an_https_issuer_cookies_are_host_prefixed_and_secure_and_plain_names_are_ignored(
    idp: HostileIdP,
) -> None:
    # An https issuer behind a TLS-terminating proxy: the server itself listens on loopback http.
    async with (
        consent_server(idp, base_url="https://127.0.0.1:PORT") as server,
        httpx2.AsyncClient(timeout=10) as http,
        httpx2.AsyncClient(timeout=10) as attacker,
    ):
        public = server.provider.settings.issuer_url  # type: ignore[union-attr]
        assert public.startswith("https://")
        client = await server.register()
        # A sibling subdomain can set a plain-named cookie for us, even one the server minted.
        attacker_page = await attacker.get(
            (await attacker.get(server.authorize_url(client, pkce()[1])))
            .headers["location"]
            .replace(public, server.base)
        )
        attacker_binding = attacker_page.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        url = (await http.get(server.authorize_url(client, pkce()[1]))).headers["location"]
        assert url.startswith(public + "/consent?")

        page = await http.get(
            url.replace(public, server.base), headers={"cookie": f"{BINDING_COOKIE}={attacker_binding}"}
        )

        assert asks_consent(page)
        [binding] = page.headers.get_list("set-cookie")
        name, rest = binding.split("=", 1)
        assert name == "__Host-" + BINDING_COOKIE
        assert rest.split(";")[0] != attacker_binding  # the planted plain-named cookie was not used
        attributes = {a.strip().split("=")[0].lower(): a.strip() for a in binding.split(";")[1:]}
        assert {"secure", "httponly", "path", "samesite"} <= set(attributes)
        assert "domain" not in attributes
        assert attributes["path"] == "Path=/"
        assert attributes["samesite"].lower() == "samesite=lax"
        target, fields = consent_form(page.text)
        answered = await http.post(
            target.replace(public, server.base),
            data={**fields, "action": "approve"},
            headers={"cookie": f"__Host-{BINDING_COOKIE}={rest.split(';')[0]}"},
        )
        assert went_upstream(answered, idp)
        names = [c.split("=", 1)[0] for c in answered.headers.get_list("set-cookie")]
        assert "__Host-" + remember_name(client) in names
        assert all(n.startswith("__Host-") for n in names)
        assert all("secure" in c.lower() for c in answered.headers.get_list("set-cookie"))


async def test_remember_for_thirty_days_lasts_thirty_days_and_no_longer(
    idp: HostileIdP, browser: httpx2.AsyncClient
) -> None:
    clock = FrozenClock()
    async with consent_server(idp, clock=clock) as server:
        client = await server.register()
        answered = await approve(browser, await open_consent(server, browser, client))
        max_ages = {
            c.split("=", 1)[0]: int(c.lower().split("max-age=")[1].split(";")[0])
            for c in answered.headers.get_list("set-cookie")
        }
        # The binding the approval names lives at least as long as the approval.
        assert max_ages[remember_name(client)] == THIRTY_DAYS
        assert max_ages[BINDING_COOKIE] >= THIRTY_DAYS

        clock.advance(THIRTY_DAYS - 3600)
        assert went_upstream(await open_consent(server, browser, client), idp)
        clock.advance(2 * 3600)
        assert asks_consent(await open_consent(server, browser, client))


# 4. The callback requires the approval


async def attackers_unapproved_login(
    server: Harness, browser: httpx2.AsyncClient, attacker_browser: httpx2.AsyncClient, repo: Repository
) -> tuple[str, str]:
    """The attacker's login, bound to the victim's browser (who saw the page and approved nothing),
    and an upstream authorization URL for it built from what the store holds."""
    attacker = await server.register(loopback_uri("/steal"), client_name="Evil App")
    url = await consent_url(server, attacker_browser, attacker)
    assert asks_consent(await browser.get(url))  # the victim looks, and does not approve
    login = query_of(url)["login"]
    found = await repo.load_login(login)
    assert found is not None
    txn = found[0]
    upstream = (await server.provider._context()).upstream  # type: ignore[union-attr]
    endpoint = (await upstream.metadata()).authorization_endpoint
    query = {
        "response_type": "code",
        "client_id": "hostile-client",
        "redirect_uri": server.base + "/oauth/callback",
        "scope": "openid",
        "state": login,
        "nonce": txn.nonce,
        "code_challenge": s256(txn.code_verifier),
        "code_challenge_method": "S256",
    }
    return login, f"{endpoint}?{urlencode(query)}"


async def test_a_login_the_victim_never_approved_cannot_complete_even_for_a_store_reader(
    server: Harness, idp: HostileIdP, browser: httpx2.AsyncClient, attacker_browser: httpx2.AsyncClient,
    repo: Repository,
) -> None:  # fmt: skip
    _, upstream_url = await attackers_unapproved_login(server, browser, attacker_browser, repo)
    exchanges = len(idp.token_requests)

    response = await finish(browser, upstream_url)

    assert_refused_without_code(response)
    assert len(idp.token_requests) == exchanges  # refused before the upstream code was used


@pytest.mark.parametrize("forgery", ["guessed MAC", "marker of another login", "copied digest"])
async def test_an_approval_marker_forged_in_the_store_does_not_complete_a_login(
    server: Harness, idp: HostileIdP, browser: httpx2.AsyncClient, attacker_browser: httpx2.AsyncClient,
    repo: Repository, forgery: str,
) -> None:  # fmt: skip
    login, upstream_url = await attackers_unapproved_login(server, browser, attacker_browser, repo)
    if forgery == "guessed MAC":
        marker = LoginApproval(mac=secrets.token_hex(32))
    elif forgery == "copied digest":
        txn = (await repo.load_login(login))[0]  # type: ignore[index]
        marker = LoginApproval(mac=txn.browser_binding or "")
    else:
        # The victim approved another login of their own in the same browser: its marker is real.
        own = await server.register()
        upstream = await server.to_upstream(browser, own, pkce()[1])
        real = await repo.load_login_approval(query_of(upstream)["state"])
        assert real is not None
        marker = real
    await repo.save_login_approval(login, marker, 600)

    response = await finish(browser, upstream_url)

    assert_refused_without_code(response)


async def test_a_login_changed_in_the_store_after_approval_cannot_complete(
    server: Harness, browser: httpx2.AsyncClient, repo: Repository
) -> None:
    loopback, steal = loopback_uri(), "https://attacker.example/steal"
    client = await server.register(loopback, redirect_uris=[loopback, steal])
    upstream_url = await server.to_upstream(browser, client, pkce()[1])  # approved for `loopback`
    login = query_of(upstream_url)["state"]
    found = await repo.load_login(login)
    assert found is not None
    await repo.start_login(login, found[0].model_copy(update={"redirect_uri": steal}), 600)

    response = await finish(browser, upstream_url)

    assert_refused_without_code(response)


async def test_an_approved_login_completes_and_its_marker_is_used_up(
    server: Harness, browser: httpx2.AsyncClient, repo: Repository
) -> None:
    client = await server.register()
    upstream_url = await server.to_upstream(browser, client, pkce()[1])
    login = query_of(upstream_url)["state"]
    assert await repo.load_login_approval(login) is not None

    response = await finish(browser, upstream_url)

    assert response.status_code == 302
    assert same_endpoint(response.headers["location"], client.redirect_uri)
    assert "code" in query_of(response.headers["location"])
    assert await repo.load_login_approval(login) is None


async def test_a_trusted_client_skips_the_page_and_the_server_writes_the_approval_itself(
    idp: HostileIdP, browser: httpx2.AsyncClient
) -> None:
    redirect_uri = loopback_uri()
    static = StaticClient(client_id="first-party", redirect_uris=(redirect_uri,), trusted=True)
    async with consent_server(idp, static_clients=(static,)) as server:
        client = Client("first-party", None, redirect_uri)
        response = await open_consent(server, browser, client)
        assert went_upstream(response, idp)

        done = await finish(browser, response.headers["location"])

    assert done.status_code == 302
    assert "code" in query_of(done.headers["location"])


# 5. Redirect URIs with user information


async def test_an_http_loopback_redirect_uri_with_user_information_is_refused_at_registration(
    server: Harness,
) -> None:
    for uri in ("http://www.bank.example:443@127.0.0.1/cb", "http://user@localhost:8080/cb"):
        response = await server.http.post(server.base + "/register", json={"redirect_uris": [uri]})
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_redirect_uri"


async def test_a_stored_redirect_uri_with_user_information_is_never_rendered(
    server: Harness, browser: httpx2.AsyncClient, repo: Repository
) -> None:
    client = await server.register()
    found = await repo.load_client_with_ttl(client.client_id)
    assert found is not None
    bank = "http://www.bank.example:443@127.0.0.1/cb"
    # Registered before the rule existed: the record holds the URI.
    record = found[0].model_copy(update={"metadata": {**found[0].metadata, "redirect_uris": [bank]}})
    await repo.save_client(client.client_id, record, 3600)
    response = await browser.get(server.authorize_url(Client(client.client_id, client.client_secret, bank), pkce()[1]))
    location = urljoin(server.base, response.headers.get("location", ""))
    page = await browser.get(location) if urlsplit(location).path == "/consent" else response

    assert page.status_code == 400
    assert "bank.example" not in page.text
