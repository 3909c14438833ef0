"""No secret reaches a log record, and every security-relevant path emits its audit event.

One scenario (run once for this module, see :func:`scenario`) drives two integrated servers,
one federating to the development IdP (user ``alice``) and one to the scriptable
:class:`HostileIdP` (user ``mallory``), through the whole life of a grant and through every
error path that is cheap to trigger. Meanwhile every log record of every logger is captured:
our package, the MCP SDK, httpx/httpx2, uvicorn, starlette, authlib, werkzeug. Each secret
minted along the way is collected; the tests then look for each one in every record (message,
args, every attribute, formatted exception and stack).

Capturing "every record" takes more than a handler on the root logger: uvicorn's loggers do
not propagate and the servers run at ``log_level="warning"``. So for the scenario
``Logger.isEnabledFor`` answers yes for DEBUG and above, and ``Logger.callHandlers`` hands
each record to the capture before (and regardless of) the logger's own handlers, which still
see only what they would have seen.

Who emitted a record matters: the test itself plays the user's browser and the MCP client,
which legitimately know the URLs they fetch (e.g. httpx2's "HTTP Request: GET
.../consent?login=..."), and the IdPs are test fixtures. A context variable, copied into every
task at its creation, tags each record with its origin: ``server`` (our two authorization
servers: the tasks uvicorn runs them in), ``idp`` (the hostile IdP's uvicorn; werkzeug and
oidc-provider-mock threads of the development IdP) or ``client`` (the test's own requests).
Server records are checked strictly; see ``TOLERATED`` for the one documented exception.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import secrets
import time
import traceback
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urljoin, urlsplit

import httpx2
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from support.harness import Client, Harness, integrated_server, pkce
from support.hostile_idp import HostileIdP
from support.net import free_port, serve_in_loop

from mcp_oidc_provider import get_upstream_tokens
from mcp_oidc_provider.core.audit import SAFE_FIELDS
from mcp_oidc_provider.crypto.minting import mint_access_token
from mcp_oidc_provider.flows.consent import BINDING_COOKIE
from mcp_oidc_provider.run.devidp import run_dev_idp
from mcp_oidc_provider.run.headless_login import consent_form

ORIGIN: ContextVar[str] = ContextVar("test_logs_origin", default="thread")

#: Audit events every run of the scenario must emit (their names are a stable interface).
REQUIRED_EVENTS = frozenset(
    {
        "client.registered",
        "login.started",
        "code.issued",
        "token.issued",
        "token.refreshed",
        "code.replayed",
        "refresh_token.reuse_detected",
        "grant.revoked",
        "upstream.login_failed",
        "login.unknown_state",
        "consent.denied",
        "consent.csrf_refused",
        "rate_limit.exceeded",
        # not required by the brief, but the scenario takes these paths too
        "consent.approved",
        "login.completed",
        "login.other_browser",
        "upstream.unreachable",
        "resource.refused",
    }
)

#: Secret categories a server-side third-party logger may show, with the reason.
#:
#: uvicorn's access log (INFO; the example servers and the tests run uvicorn at
#: ``log_level="warning"``, which hides it, but uvicorn's own default is ``info``) records each
#: request line with its query string. Our server is *sent* these values in URLs, by design of
#: the protocol: the login id at ``/consent?login=`` (which is also the upstream ``state``),
#: the upstream authorization code and that ``state`` at ``/oauth/callback``, and the client's
#: own ``state`` at ``/authorize``. None of them is usable alone: the login id is single-use and
#: bound to the browser's HttpOnly cookie, the upstream code to our PKCE verifier and upstream
#: client secret. Every other secret (our tokens, codes and client secrets, cookies, CSRF
#: tokens, nonces, verifiers, upstream tokens, e-mail addresses, key material) is still
#: forbidden there. docs/SECURITY.md tells operators to turn the access log off or strip
#: query strings.
TOLERATED: dict[str, frozenset[str]] = {
    "uvicorn.access": frozenset({"login id / upstream state", "upstream authorization code", "client state"}),
}

#: Loggers of the development IdP (werkzeug's access log shows its /authorize URL with our
#: state and nonce): a test fixture in a thread of this process, never part of a deployment.
IDP_LOGGERS = ("werkzeug", "oidc_provider_mock", "flask")


@dataclass
class Captured:
    name: str
    levelno: int
    origin: str
    text: str
    message: str
    event: str | None
    audit_fields: dict[str, Any]


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a broken format string: logging would report it, not raise
        return f"{record.msg!s} % {record.args!r}"


def _record_text(record: logging.LogRecord) -> str:
    """Everything a formatter or a structured-log shipper could put in a log line."""
    parts = [_message(record), str(record.msg), str(record.args), repr(record.args)]
    for key, value in record.__dict__.items():
        with contextlib.suppress(Exception):
            parts.append(f"{key}={value!s}")
        with contextlib.suppress(Exception):
            parts.append(repr(value))
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
        exc: BaseException | None = record.exc_info[1]
        while exc is not None:
            parts.extend([str(exc), repr(exc), repr(getattr(exc, "__dict__", {}))])
            exc = exc.__cause__ or exc.__context__
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


class Capture:
    def __init__(self) -> None:
        self.records: list[Captured] = []

    def take(self, record: logging.LogRecord) -> None:
        origin = ORIGIN.get()
        # The development IdP: werkzeug's request threads (where authlib, its OAuth server
        # library, logs too, e.g. "Issue token {...}" at DEBUG) and its own loggers.
        if record.name.split(".")[0] in IDP_LOGGERS or "process_request_thread" in (record.threadName or ""):
            origin = "idp"
        self.records.append(
            Captured(
                name=record.name,
                levelno=record.levelno,
                origin=origin,
                text=_record_text(record),
                message=_message(record),
                event=getattr(record, "event", None),
                audit_fields={k: v for k, v in record.__dict__.items() if k.startswith("audit_")},
            )
        )

    @contextlib.contextmanager
    def everything(self) -> Any:
        original_enabled = logging.Logger.isEnabledFor
        original_call = logging.Logger.callHandlers
        capture = self

        def is_enabled_for(self: logging.Logger, level: int) -> bool:
            return level >= logging.DEBUG or original_enabled(self, level)

        def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
            capture.take(record)
            if original_enabled(self, record.levelno):  # what the logger would have passed on
                original_call(self, record)

        logging.Logger.isEnabledFor = is_enabled_for  # type: ignore[method-assign]
        logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]
        try:
            yield self
        finally:
            logging.Logger.isEnabledFor = original_enabled  # type: ignore[method-assign]
            logging.Logger.callHandlers = original_call  # type: ignore[method-assign]


@dataclass
class Secrets:
    by_category: dict[str, set[str]] = field(default_factory=dict)

    def add(self, category: str, *values: object) -> None:
        for value in values:
            if isinstance(value, str) and len(value) >= 8:
                self.by_category.setdefault(category, set()).add(value)

    def variants(self) -> list[tuple[str, str, str]]:
        """(category, secret, form found) for the raw and URL-encoded forms of each secret."""
        found: list[tuple[str, str, str]] = []
        for category, values in self.by_category.items():
            for value in values:
                for form in {value, quote(value, safe=""), quote(value)}:
                    found.append((category, value, form))
        return found


@dataclass
class Scenario:
    records: list[Captured]
    secrets: Secrets
    statuses: dict[str, Any]


async def upstream_probe() -> str:
    """A test tool: reads the caller's upstream tokens and returns only a fingerprint."""
    tokens = await get_upstream_tokens()
    if tokens is None:
        return json.dumps({"tokens": None})
    return json.dumps({"sha256": hashlib.sha256(tokens.access_token.encode()).hexdigest()})


def claims_of(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


class Driver:
    """The user's browser and the MCP client, collecting every secret they see."""

    def __init__(self, harness: Harness, found: Secrets) -> None:
        self.h = harness
        self.found = found

    def collect_cookies(self, browser: httpx2.AsyncClient) -> None:
        for cookie in browser.cookies.jar:
            self.found.add("browser binding cookie" if cookie.name == BINDING_COOKIE else "cookie", cookie.value)

    async def collect_login(self, login: str) -> None:
        self.found.add("login id / upstream state", login)
        assert self.h.provider is not None
        ctx = await self.h.provider.context()
        found = await ctx.repo.load_login(login)
        if found is not None:
            self.found.add("upstream nonce", found[0].nonce)
            self.found.add("upstream pkce verifier", found[0].code_verifier)

    async def collect_grant(self, access_token: str) -> None:
        """The upstream tokens kept with the grant (read from the store, as tools would get them)."""
        assert self.h.provider is not None
        ctx = await self.h.provider.context()
        found = await ctx.repo.load_grant_and_upstream(str(claims_of(access_token)["gid"]))
        if found is not None and found[0].upstream is not None:
            up = found[0].upstream
            self.found.add("upstream token", up.access_token, up.refresh_token, up.id_token)

    async def browse(
        self,
        client: Client,
        challenge: str,
        *,
        browser: httpx2.AsyncClient,
        consent: str = "approve",
        idp_action: str = "login",
        csrf: str | None = None,
        stop_at_callback: bool = False,
        **extra: str,
    ) -> dict[str, str]:
        """/authorize -> consent -> IdP -> our callback -> the client's redirect URI."""
        client_state = secrets.token_urlsafe(16)
        self.found.add("client state", client_state)
        url = self.h.authorize_url(client, challenge, state=client_state, **extra)
        ours = urlsplit(self.h.base).netloc
        target = urlsplit(client.redirect_uri)
        for _ in range(12):
            parts = urlsplit(url)
            query = dict(parse_qsl(parts.query))
            if (parts.netloc, parts.path) == (target.netloc, target.path):
                self.found.add("our authorization code", query.get("code"))
                return query
            if parts.netloc == ours and parts.path == "/consent":
                await self.collect_login(query["login"])
            elif parts.netloc != ours:  # the IdP's authorization endpoint
                self.found.add("login id / upstream state", query.get("state"))
                self.found.add("upstream nonce", query.get("nonce"))
            elif parts.path == "/oauth/callback":
                self.found.add("upstream authorization code", query.get("code"))
                if stop_at_callback:
                    return {"_callback": url}
            response = await browser.get(url)
            self.collect_cookies(browser)
            if response.status_code == 200 and parts.netloc == ours and parts.path == "/consent":
                action, fields = consent_form(response.text)
                self.found.add("csrf token", fields.get("csrf"))
                if csrf is not None:
                    fields["csrf"] = csrf
                response = await browser.post(action, data={**fields, "action": consent})
                self.collect_cookies(browser)
            elif response.status_code == 200 and parts.netloc != ours:  # the dev IdP's login form
                form = {"sub": "alice"} if idp_action == "login" else {"action": "deny"}
                response = await browser.post(url, data=form)
            if response.status_code not in (302, 303, 307):
                return {"_status": str(response.status_code), "_body": response.text}
            url = urljoin(url, response.headers["location"])
        raise AssertionError("too many redirects")

    async def register(self) -> Client:
        client = await self.h.register()
        self.found.add("client secret", client.client_secret)
        return client

    async def login(self, client: Client, browser: httpx2.AsyncClient) -> tuple[dict[str, str], str]:
        verifier, challenge = pkce()
        self.found.add("client pkce verifier", verifier)
        query = await self.browse(client, challenge, browser=browser)
        assert "code" in query, query
        return query, verifier

    async def redeem(self, client: Client, code: str, verifier: str) -> httpx2.Response:
        response = await self.h.redeem(client, code, verifier)
        self.collect_tokens(response)
        return response

    async def refresh(self, client: Client, refresh_token: str) -> httpx2.Response:
        response = await self.h.token(client, grant_type="refresh_token", refresh_token=refresh_token)
        self.collect_tokens(response)
        return response

    def collect_tokens(self, response: httpx2.Response) -> None:
        if response.status_code == 200:
            body = response.json()
            self.found.add("our access token", body.get("access_token"))
            self.found.add("our refresh token", body.get("refresh_token"))

    async def revoke(self, client: Client, token: str) -> httpx2.Response:
        data = {"token": token, "client_id": client.client_id, "client_secret": client.client_secret or ""}
        return await self.h.http.post(self.h.base + "/revoke", data=data)


async def dev_idp_paths(h: Harness, found: Secrets, statuses: dict[str, Any]) -> None:
    d = Driver(h, found)
    assert h.provider is not None
    ctx = await h.provider.context()
    found.add("signing key", *(str(k.as_dict(private=True).get("d")) for k in ctx.keys._by_kid.values()))
    found.add("secret seed", base64.urlsafe_b64encode(ctx.keys.secret).decode().rstrip("="), ctx.keys.secret.hex())
    found.add("e-mail", "alice@example.test")

    client = await d.register()
    async with httpx2.AsyncClient(timeout=10) as browser:
        # The full life of a grant: login, consent, code, tokens, MCP, tool, refresh, reuse.
        query, verifier = await d.login(client, browser)
        first = await d.redeem(client, query["code"], verifier)
        statuses["redeem"] = first.status_code
        tokens = first.json()
        await d.collect_grant(tokens["access_token"])
        statuses["mcp"] = (await h.mcp(tokens["access_token"])).status_code
        statuses["tool"] = await h.call_tool(tokens["access_token"], "upstream_probe")
        await d.collect_grant(tokens["access_token"])
        refreshed = await d.refresh(client, tokens["refresh_token"])
        statuses["refresh"] = refreshed.status_code
        reused = await d.refresh(client, tokens["refresh_token"])  # grace 0: reuse revokes the grant
        statuses["refresh_reuse"] = reused.status_code
        statuses["after_reuse"] = (await h.mcp(refreshed.json()["access_token"])).status_code

        # Code replay (the browser remembers its consent: no consent page this time).
        query, verifier = await d.login(client, browser)
        statuses["wrong_pkce"] = (await d.redeem(client, query["code"], pkce()[0])).status_code
        replayed_from = await d.redeem(client, query["code"], verifier)
        statuses["replay"] = (await d.redeem(client, query["code"], verifier)).status_code
        statuses["after_replay"] = (await h.mcp(replayed_from.json()["access_token"])).status_code

        # Revocation (RFC 7009), then bad bearer tokens of every kind.
        query, verifier = await d.login(client, browser)
        live = (await d.redeem(client, query["code"], verifier)).json()
        await d.collect_grant(live["access_token"])
        live_claims = claims_of(live["access_token"])
        now = int(time.time())

        def minted(**changes: Any) -> str:
            kwargs: dict[str, Any] = {
                "issuer": ctx.issuer,
                "subject": "alice",
                "audience": h.mcp_url,
                "client_id": client.client_id,
                "scopes": ["mcp"],
                "grant_id": live_claims["gid"],
                "issued_at": now,
                "lifetime": 3600,
                **changes,
            }
            token, _ = mint_access_token(ctx.keys, **kwargs)
            found.add("minted token", token)
            return token

        header, payload, signature = live["access_token"].split(".")
        forged = dict(live_claims, sub="root")
        forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
        id_token_like = ctx.keys.sign({**live_claims, "exp": now + 600}, "JWT")
        found.add("minted token", id_token_like)
        found_grant = await ctx.repo.load_grant_and_upstream(live_claims["gid"])
        assert found_grant is not None and found_grant[0].upstream is not None
        grant = found_grant[0]
        assert grant.upstream is not None
        bad_bearers = {
            "garbage": secrets.token_urlsafe(40),
            "alg_none": f"eyJhbGciOiJub25lIn0.{payload}.",
            "tampered": f"{header}.{forged_payload}.{signature}",
            "other_audience": minted(audience="https://other.example/mcp"),
            "expired": minted(issued_at=now - 7200),
            "not_yet_valid": minted(issued_at=now + 3600),
            "our_key_typ_jwt": id_token_like,
            "upstream_id_token": str(grant.upstream.id_token),
            "upstream_access_token": grant.upstream.access_token,
        }
        found.add("bad bearer", *bad_bearers.values())
        statuses["bad_bearers"] = {name: (await h.mcp(token)).status_code for name, token in bad_bearers.items()}
        statuses["revoke"] = (await d.revoke(client, live["refresh_token"])).status_code
        statuses["after_revoke"] = (await h.mcp(live["access_token"])).status_code

    # Consent refused: a forged CSRF token, and a POST from another browser (no binding cookie).
    async with httpx2.AsyncClient(timeout=10) as browser:
        _, challenge = pkce()
        statuses["csrf"] = await d.browse(client, challenge, browser=browser, csrf=secrets.token_hex(32))
    async with httpx2.AsyncClient(timeout=10) as browser, httpx2.AsyncClient(timeout=10) as other:
        _, challenge = pkce()
        consent_url = (await browser.get(h.authorize_url(client, challenge))).headers["location"]
        await d.collect_login(dict(parse_qsl(urlsplit(consent_url).query))["login"])
        page = await browser.get(consent_url)
        d.collect_cookies(browser)
        action, fields = consent_form(page.text)
        found.add("csrf token", fields["csrf"])
        statuses["consent_other_browser_post"] = (
            await other.post(action, data={**fields, "action": "approve"})
        ).status_code
        statuses["consent_other_browser_get"] = (await other.get(consent_url)).status_code
        d.collect_cookies(other)
    # Consent denied; the user denies at the IdP.
    async with httpx2.AsyncClient(timeout=10) as browser:
        _, challenge = pkce()
        statuses["deny"] = await d.browse(client, challenge, browser=browser, consent="deny")
    async with httpx2.AsyncClient(timeout=10) as browser:
        _, challenge = pkce()
        statuses["idp_deny"] = await d.browse(client, challenge, browser=browser, idp_action="deny")
    # A forged callback; a resource we do not serve.
    forged_state = secrets.token_urlsafe(32)
    found.add("login id / upstream state", forged_state)
    callback = await h.http.get(h.base + "/oauth/callback", params={"state": forged_state, "code": "x" * 20})
    statuses["forged_callback"] = callback.status_code
    _, challenge = pkce()
    wrong_resource = await h.http.get(h.authorize_url(client, challenge, resource="https://other.example/mcp"))
    statuses["wrong_resource"] = wrong_resource.headers.get("location", "")

    # Oversized bodies, then a registration flood until the rate limit answers (last: it
    # blocks /register and /authorize from this address for a minute).
    big = "x" * (70 * 1024)
    statuses["oversized"] = {
        path: (await h.http.post(h.base + path, content=big, headers={"content-type": kind})).status_code
        for path, kind in (
            ("/register", "application/json"),
            ("/token", "application/x-www-form-urlencoded"),
            ("/consent", "application/x-www-form-urlencoded"),
        )
    }
    for _ in range(200):
        response = await h.http.post(h.base + "/register", json={"redirect_uris": ["javascript:alert(1)"]})
        if response.status_code == 429:
            break
    statuses["rate_limited"] = response.status_code


async def hostile_idp_paths(h: Harness, idp: HostileIdP, found: Secrets, statuses: dict[str, Any]) -> None:
    d = Driver(h, found)
    found.add("upstream client secret", "hostile-secret")
    found.add("e-mail", "mallory@example.test")
    client = await d.register()

    # A user whose upstream access token is about to expire: the tool call refreshes it upstream.
    idp.access_token_lifetime = 5
    async with httpx2.AsyncClient(timeout=10) as browser:
        query, verifier = await d.login(client, browser)
    idp.access_token_lifetime = 3600
    tokens = (await d.redeem(client, query["code"], verifier)).json()
    statuses["hostile_tool"] = await h.call_tool(tokens["access_token"], "upstream_probe")
    statuses["upstream_refreshes"] = idp.refreshes

    # The upstream callback replayed in another browser, then finished in the right one.
    async with httpx2.AsyncClient(timeout=10) as browser, httpx2.AsyncClient(timeout=10) as other:
        _, challenge = pkce()
        stopped = await d.browse(client, challenge, browser=browser, stop_at_callback=True)
        statuses["callback_other_browser"] = (await other.get(stopped["_callback"])).status_code
        statuses["callback_same_browser"] = (await browser.get(stopped["_callback"])).status_code
        # and a tampered state
        _, challenge = pkce()
        upstream_url = await h.to_upstream(browser, client, challenge)
        at_idp = await browser.get(upstream_url.replace("state=", "state=x"))
        statuses["tampered_state"] = (await browser.get(at_idp.headers["location"])).status_code

    # Broken ID tokens, IdP errors, a failing token endpoint: each one a fresh browser.
    outcomes: dict[str, str] = {}
    for mode in ("wrong_nonce", "wrong_aud", "bad_signature", "wrong_iss", "expired", "no_id_token", "alg_none"):
        idp.mode = mode
        async with httpx2.AsyncClient(timeout=10) as browser:
            outcomes[mode] = (await d.browse(client, pkce()[1], browser=browser)).get("error", "?")
    idp.mode = "ok"
    for error in ("access_denied", "server_error", "temporarily_unavailable"):
        idp.authorize_error = error
        async with httpx2.AsyncClient(timeout=10) as browser:
            outcomes[f"idp:{error}"] = (await d.browse(client, pkce()[1], browser=browser)).get("error", "?")
    idp.authorize_error = None
    idp.token_status = 500
    async with httpx2.AsyncClient(timeout=10) as browser:
        outcomes["token_endpoint_500"] = (await d.browse(client, pkce()[1], browser=browser)).get("error", "?")
    idp.token_status = 200
    statuses["hostile_outcomes"] = outcomes

    # Everything the hostile IdP saw and gave out.
    for request in idp.authorize_requests:
        found.add("login id / upstream state", request.get("state"))
        found.add("upstream nonce", request.get("nonce"))
    for request in idp.token_requests:
        found.add("upstream authorization code", request.get("code"))
        found.add("upstream pkce verifier", request.get("code_verifier"))
        found.add("upstream refresh token", request.get("refresh_token"))
        authorization = request.get("authorization", "")
        found.add("upstream client secret", authorization, authorization.removeprefix("Basic "))
    for issued in idp.issued:
        found.add("upstream token", issued.get("access_token"), issued.get("refresh_token"), issued.get("id_token"))


async def run_scenario() -> Scenario:
    capture = Capture()
    found = Secrets()
    statuses: dict[str, Any] = {}
    settings = {"refresh_reuse_grace_seconds": 0, "extra_tools": [upstream_probe]}
    with capture.everything():
        async with contextlib.AsyncExitStack() as stack:
            ORIGIN.set("idp")
            idp = HostileIdP()
            port = free_port()
            idp.issuer = f"http://127.0.0.1:{port}"
            await stack.enter_async_context(serve_in_loop(idp.app(), port))
            ORIGIN.set("server")
            # Its own development IdP (not the session fixture), so its start falls in this run.
            dev_issuer = stack.enter_context(run_dev_idp())
            dev = await stack.enter_async_context(integrated_server(dev_issuer, **settings))
            hostile = await stack.enter_async_context(
                integrated_server(idp.issuer, client_id=idp.client_id, client_secret="hostile-secret", **settings)
            )
            ORIGIN.set("client")
            found.add("upstream client secret", "dev-secret-not-for-production")
            await dev_idp_paths(dev, found, statuses)
            await hostile_idp_paths(hostile, idp, found, statuses)
            ORIGIN.set("server")  # the servers' shutdown
    return Scenario(capture.records, found, statuses)


@pytest.fixture(scope="module")
async def scenario() -> AsyncIterator[Scenario]:
    yield await run_scenario()


def leaks(records: list[Captured], found: Secrets, tolerated: dict[str, frozenset[str]]) -> list[str]:
    forms = found.variants()
    out: list[str] = []
    for record in records:
        allowed = tolerated.get(record.name, frozenset())
        for category, _secret, form in forms:
            if category not in allowed and form in record.text:
                out.append(f"{record.name} [{record.origin}] leaks {category}: {record.message[:200]!r}")
    return sorted(set(out))


# the scenario really took every path


def test_the_scenario_took_every_path(scenario: Scenario) -> None:
    s = scenario.statuses
    assert (s["redeem"], s["mcp"], s["refresh"]) == (200, 200, 200)
    assert "sha256" in s["tool"] and "sha256" in s["hostile_tool"]
    assert s["upstream_refreshes"] >= 1  # get_upstream_tokens refreshed at the IdP
    assert (s["refresh_reuse"], s["after_reuse"]) == (400, 401)
    assert (s["wrong_pkce"], s["replay"], s["after_replay"]) == (400, 400, 401)
    assert (s["revoke"], s["after_revoke"]) == (200, 401)
    assert set(s["bad_bearers"].values()) == {401}, s["bad_bearers"]
    assert s["csrf"]["_status"] == "400"
    assert (s["consent_other_browser_post"], s["consent_other_browser_get"]) == (400, 400)
    assert s["deny"]["error"] == "access_denied" and s["idp_deny"]["error"] == "access_denied"
    assert s["forged_callback"] == 400
    assert "error=invalid_" in s["wrong_resource"]
    assert set(s["oversized"].values()) == {413}, s["oversized"]
    assert s["rate_limited"] == 429
    assert (s["callback_other_browser"], s["callback_same_browser"], s["tampered_state"]) == (400, 302, 400)
    outcomes = s["hostile_outcomes"]
    broken = ("wrong_nonce", "wrong_aud", "bad_signature", "wrong_iss", "expired", "no_id_token", "alg_none")
    assert all(outcomes[m] == "server_error" for m in (*broken, "token_endpoint_500")), outcomes
    assert outcomes["idp:access_denied"] == "access_denied"
    assert outcomes["idp:temporarily_unavailable"] == "temporarily_unavailable"
    categories = set(scenario.secrets.by_category)
    assert categories >= {
        "our access token", "our refresh token", "our authorization code", "client secret",
        "login id / upstream state", "upstream nonce", "upstream pkce verifier", "upstream token",
        "upstream authorization code", "csrf token", "browser binding cookie", "cookie", "e-mail",
        "upstream client secret", "client pkce verifier", "signing key", "secret seed",
    }  # fmt: skip
    assert {r.origin for r in scenario.records} >= {"server", "client", "idp"}


# no secret in any log record


def test_our_package_logs_no_secret(scenario: Scenario) -> None:
    ours = [r for r in scenario.records if r.name == "mcp_oidc_provider" or r.name.startswith("mcp_oidc_provider.")]
    assert ours, "our package logged nothing: the capture is broken"
    assert leaks(ours, scenario.secrets, {}) == []


def test_third_party_loggers_in_the_server_log_no_secret(scenario: Scenario) -> None:
    """The SDK, uvicorn, starlette, httpx2 (the provider's calls to the IdP), authlib...:
    strictly nothing, except what ``TOLERATED`` documents for uvicorn's access log."""
    server = [r for r in scenario.records if r.origin == "server" and not r.name.startswith("mcp_oidc_provider")]
    assert {r.name.split(".")[0] for r in server} >= {"httpx2", "uvicorn"}, "capture is broken"
    assert leaks(server, scenario.secrets, TOLERATED) == []


def test_records_of_unknown_origin_log_no_secret(scenario: Scenario) -> None:
    """Threads that are not the development IdP's (none are expected) get no exemption."""
    unknown = [r for r in scenario.records if r.origin == "thread"]
    assert leaks(unknown, scenario.secrets, {}) == []


# audit events


def test_every_path_emitted_its_audit_event_with_a_stable_name(scenario: Scenario) -> None:
    audit = [r for r in scenario.records if r.name == "mcp_oidc_provider.audit"]
    assert all(r.event == r.message for r in audit)
    emitted = {r.event for r in audit}
    assert emitted >= REQUIRED_EVENTS, sorted(REQUIRED_EVENTS - emitted)


def test_audit_records_carry_only_identifiers(scenario: Scenario) -> None:
    audit = [r for r in scenario.records if r.name == "mcp_oidc_provider.audit"]
    for record in audit:
        assert {k.removeprefix("audit_") for k in record.audit_fields} <= SAFE_FIELDS
    subjects = {r.audit_fields.get("audit_subject") for r in audit if r.event == "code.issued"}
    assert subjects == {"alice", "mallory"}
    refused = [r for r in audit if r.event == "resource.refused"]
    assert refused and refused[0].audit_fields["audit_resource"] == "https://other.example/mcp"


# a malformed upstream token response


class MalformedRefreshTokenIdP(HostileIdP):
    """An IdP whose token response carries a ``refresh_token`` that is not a string."""

    def __init__(self, *, on_refresh_only: bool) -> None:
        super().__init__()
        self.on_refresh_only = on_refresh_only
        self.bad_value = secrets.randbelow(10**17) + 10**17  # 18 digits, unique in any log

    async def token(self, request: Request) -> Response:
        response = await super().token(request)
        body = json.loads(bytes(response.body))
        if "access_token" in body and (self.refreshes or not self.on_refresh_only):
            body["refresh_token"] = self.bad_value
        return JSONResponse(body, status_code=response.status_code)


async def malformed_run(idp: MalformedRefreshTokenIdP, *, call_tool: bool) -> tuple[list[Captured], dict[str, Any]]:
    capture = Capture()
    outcome: dict[str, Any] = {}
    with capture.everything():
        async with contextlib.AsyncExitStack() as stack:
            ORIGIN.set("idp")
            port = free_port()
            idp.issuer = f"http://127.0.0.1:{port}"
            await stack.enter_async_context(serve_in_loop(idp.app(), port))
            ORIGIN.set("server")
            h = await stack.enter_async_context(
                integrated_server(idp.issuer, client_id=idp.client_id, client_secret="s", extra_tools=[upstream_probe])
            )
            ORIGIN.set("client")
            client = await h.register()
            verifier, challenge = pkce()
            outcome["callback"] = await h.follow_to_client(h.authorize_url(client, challenge), client.redirect_uri)
            if call_tool and "code" in outcome["callback"]:
                tokens = (await h.redeem(client, outcome["callback"]["code"], verifier)).json()
                try:
                    outcome["tool"] = await h.call_tool(tokens["access_token"], "upstream_probe")
                except Exception as exc:  # the tool call failed: recorded for the assertion
                    outcome["tool"] = {"raised": type(exc).__name__}
            ORIGIN.set("server")
    return capture.records, outcome


async def test_a_malformed_refresh_token_at_the_callback_is_neither_logged_nor_a_500() -> None:
    """The IdP answers the code exchange with a non-string ``refresh_token``: the client gets an
    OAuth error redirect (RFC 6749 §4.1.2.1) and no log record shows the value."""
    idp = MalformedRefreshTokenIdP(on_refresh_only=False)
    records, outcome = await malformed_run(idp, call_tool=False)
    leaked = sorted(
        {f"{r.name}: {r.message[:120]!r}" for r in records if r.origin == "server" and str(idp.bad_value) in r.text}
    )
    assert leaked == []
    assert outcome["callback"].get("error") == "server_error", outcome["callback"]


async def test_a_malformed_refresh_token_at_an_upstream_refresh_is_not_logged() -> None:
    """The IdP answers the upstream refresh behind ``get_upstream_tokens()`` with a non-string
    ``refresh_token``: a failed refresh (the old tokens are returned, as documented) and no
    log record shows the value."""
    idp = MalformedRefreshTokenIdP(on_refresh_only=True)
    idp.access_token_lifetime = 5  # inside the refresh margin: the tool call refreshes upstream
    records, outcome = await malformed_run(idp, call_tool=True)
    leaked = sorted(
        {f"{r.name}: {r.message[:120]!r}" for r in records if r.origin == "server" and str(idp.bad_value) in r.text}
    )
    assert idp.refreshes == 1
    assert leaked == []
    assert "sha256" in outcome["tool"], outcome["tool"]
