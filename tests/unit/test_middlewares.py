"""The HTTP-edge middlewares (web/), driven in-process through httpx2's ASGITransport around a tiny
Starlette app that stands in for the SDK: body limit, /register body, /token resource, iss on
/authorize error redirects, and their composition by protect()."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from mcp_oidc_provider.core.settings import ProviderSettings, UpstreamSettings
from mcp_oidc_provider.flows.grants import requested_resource
from mcp_oidc_provider.web.body_limit import BodyLimitMiddleware
from mcp_oidc_provider.web.issuer_redirects import IssuerOnRedirectsMiddleware, with_iss
from mcp_oidc_provider.web.protection import protect
from mcp_oidc_provider.web.register_body import RegisterBodyMiddleware, is_json_object
from mcp_oidc_provider.web.token_resource import TokenResourceMiddleware, is_served

pytestmark = pytest.mark.unit

ISSUER = "https://auth.example"
MCP = "https://mcp.example/mcp"
#: RFC 6749 §4.1.2.1: error_description is %x20-21 / %x23-5B / %x5D-7E.
DESCRIPTION_CHARSET = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]*")


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"length": len(body), "body": body.decode("latin-1"), "resource": requested_resource.get()})


async def authorize(request: Request) -> Response:
    if request.method == "POST":
        return await echo(request)
    return RedirectResponse(request.query_params["to"], status_code=int(request.query_params.get("status", "302")))


SDK_STANDIN = Starlette(
    routes=[
        Route("/authorize", authorize, methods=["GET", "POST"]),
        *(Route(p, echo, methods=["POST", "PUT"]) for p in ("/register", "/token", "/revoke", "/consent", "/mcp")),
    ]
)


def client(app: ASGIApp) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://testserver")


def assert_oauth_error(response: httpx2.Response, status: int, error: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error
    assert DESCRIPTION_CHARSET.fullmatch(body["error_description"])


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


# --- body limit ---------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_before_the_handler_runs() -> None:
    async with client(BodyLimitMiddleware(SDK_STANDIN, max_body_bytes=1024)) as http:
        assert_oauth_error(await http.post("/register", content=b"x" * 1025), 413, "invalid_request")
        assert_oauth_error(await http.post("/token", content=b"x" * 10_000), 413, "invalid_request")
        assert (await http.post("/register", content=b"x" * 1024)).json()["length"] == 1024


async def test_a_chunked_body_without_content_length_is_counted_as_it_arrives() -> None:
    async with client(BodyLimitMiddleware(SDK_STANDIN, max_body_bytes=1024)) as http:
        refused = await http.post("/consent", content=chunks(*[b"y" * 300] * 4))
        assert "content-length" not in refused.request.headers
        assert_oauth_error(refused, 413, "invalid_request")
        # Under the limit, the handler sees the whole body, reassembled.
        accepted = await http.post("/consent", content=chunks(b"a" * 500, b"b" * 500))
        assert accepted.json()["body"] == "a" * 500 + "b" * 500


async def test_only_the_authorization_endpoints_are_limited() -> None:
    async with client(BodyLimitMiddleware(SDK_STANDIN, max_body_bytes=1024)) as http:
        assert (await http.post("/mcp", content=b"z" * 5000)).json()["length"] == 5000  # the SDK keeps its own


async def test_a_content_length_that_is_not_a_number_is_refused() -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/token", "headers": [(b"content-length", b"-1")]}
    await BodyLimitMiddleware(SDK_STANDIN, max_body_bytes=1024)(scope, receive, send)
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"] == "invalid_request"


async def test_a_client_that_disconnects_mid_body_gets_no_response() -> None:
    sent: list[Message] = []
    messages = iter([{"type": "http.request", "body": b"a", "more_body": True}, {"type": "http.disconnect"}])

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/token", "headers": []}
    await BodyLimitMiddleware(SDK_STANDIN, max_body_bytes=1024)(scope, receive, send)
    assert sent == []


# --- /register body ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"[]", b'"x"', b"null", b"{", b"\xff\xfe", b"[" * 5000 + b"]" * 5000])
async def test_a_registration_body_that_is_not_a_json_object_is_invalid_client_metadata(body: bytes) -> None:
    # RFC 7591 §3.2.2.
    async with client(RegisterBodyMiddleware(SDK_STANDIN)) as http:
        response = await http.post("/register", content=body, headers={"content-type": "application/json"})
    assert_oauth_error(response, 400, "invalid_client_metadata")


async def test_a_json_object_reaches_the_registration_handler_unchanged() -> None:
    body = json.dumps({"redirect_uris": ["http://127.0.0.1:1/cb"]}).encode()
    async with client(RegisterBodyMiddleware(SDK_STANDIN)) as http:
        assert (await http.post("/register", content=body)).json()["body"] == body.decode()
        assert (await http.post("/token", content=b"[]")).status_code == 200  # not /register: untouched
    assert is_json_object(b"{}") and not is_json_object(b"1")


# --- /token resource (RFC 8707) -----------------------------------------------------------------


async def test_a_served_resource_at_token_reaches_the_grant_flows() -> None:
    async with client(TokenResourceMiddleware(SDK_STANDIN, (MCP, "https://other.example/mcp"))) as http:
        response = await http.post("/token", data={"grant_type": "refresh_token", "resource": MCP + "/"})
    # A trailing slash is the same resource; the flows compare it with the grant's.
    assert response.json()["resource"] == MCP + "/"
    assert "grant_type=refresh_token" in response.json()["body"]


async def test_a_token_request_without_resource_passes_with_none() -> None:
    async with client(TokenResourceMiddleware(SDK_STANDIN, (MCP,))) as http:
        assert (await http.post("/token", data={"grant_type": "authorization_code"})).json()["resource"] is None


@pytest.mark.parametrize(
    "form",
    [
        [("resource", "https://evil.example/mcp")],
        [("resource", "")],
        [("resource", MCP + "/extra")],
        [("resource", MCP), ("resource", MCP)],  # RFC 8707 §2: several resources are refused here
        [("resource", MCP), ("resource", "https://evil.example/mcp")],
    ],
)
async def test_a_resource_not_served_here_or_given_twice_is_invalid_target(form: list[tuple[str, str]]) -> None:
    async with client(TokenResourceMiddleware(SDK_STANDIN, (MCP,))) as http:
        response = await http.post(
            "/token",
            content=urlencode(form),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert_oauth_error(response, 400, "invalid_target")


async def test_resources_are_only_checked_at_the_token_endpoint() -> None:
    async with client(TokenResourceMiddleware(SDK_STANDIN, (MCP,))) as http:
        assert (await http.post("/revoke", data={"resource": "https://evil.example"})).status_code == 200


def test_served_resources_compare_without_trailing_slashes() -> None:
    assert is_served(MCP + "/", (MCP,))
    assert is_served(MCP, (MCP + "/",))
    assert not is_served("https://mcp.example/mcp2", (MCP,))
    assert not is_served("HTTPS://mcp.example/mcp", (MCP,))


# --- iss on /authorize error redirects (RFC 9207 §2) --------------------------------------------


async def redirect_from_authorize(app: ASGIApp, to: str, status: int = 302) -> str:
    async with client(app) as http:
        response = await http.get("/authorize", params={"to": to, "status": str(status)})
    assert response.status_code == status
    return response.headers["location"]


@pytest.mark.parametrize("status", [302, 303])
async def test_the_sdks_error_redirects_from_authorize_gain_iss(status: int) -> None:
    app = IssuerOnRedirectsMiddleware(SDK_STANDIN, ISSUER)
    location = await redirect_from_authorize(app, "http://127.0.0.1:9/cb?error=invalid_request&state=s1", status)
    query = parse_qs(urlsplit(location).query)
    assert query == {"error": ["invalid_request"], "state": ["s1"], "iss": [ISSUER]}


@pytest.mark.parametrize(
    "to",
    [
        "http://127.0.0.1:9/cb?code=abc&state=s1&iss=https%3A%2F%2Fauth.example",  # ours: already carries iss
        "http://127.0.0.1:9/cb?error=access_denied&iss=https%3A%2F%2Fauth.example",
        "https://auth.example/consent?login=xyz",  # not an error redirect
    ],
)
async def test_redirects_that_are_not_errors_or_already_carry_iss_are_untouched(to: str) -> None:
    assert await redirect_from_authorize(IssuerOnRedirectsMiddleware(SDK_STANDIN, ISSUER), to) == to


async def test_only_authorize_redirects_are_rewritten() -> None:
    app = IssuerOnRedirectsMiddleware(Starlette(routes=[Route("/other", authorize)]), ISSUER)
    async with client(app) as http:
        response = await http.get("/other", params={"to": "http://127.0.0.1:9/cb?error=x"})
    assert response.headers["location"] == "http://127.0.0.1:9/cb?error=x"


def test_with_iss_keeps_every_existing_parameter_and_encodes_the_issuer() -> None:
    location = with_iss("cursor://cb/path?error=server_error&error_description=a+b&state=", "https://a.example/t?x")
    parts = urlsplit(location)
    assert (parts.scheme, parts.netloc, parts.path) == ("cursor", "cb", "/path")
    assert parse_qs(parts.query, keep_blank_values=True) == {
        "error": ["server_error"],
        "error_description": ["a b"],
        "state": [""],
        "iss": ["https://a.example/t?x"],
    }


# --- protect(): the composition ----------------------------------------------------------------


def settings(**overrides: Any) -> ProviderSettings:
    upstream = UpstreamSettings(issuer="https://idp.example", client_id="us", token_endpoint_auth_method="none")
    return ProviderSettings(issuer_url=ISSUER, resource_urls=(MCP,), upstream=upstream, **overrides)


async def test_protect_installs_every_check_in_front_of_the_sdk() -> None:
    app = protect(SDK_STANDIN, settings(max_body_bytes=1024, rate_limit_per_minute=100), ISSUER)
    async with client(app) as http:
        assert_oauth_error(await http.post("/register", content=b"x" * 2000), 413, "invalid_request")
        assert_oauth_error(await http.post("/register", content=b"[]"), 400, "invalid_client_metadata")
        assert_oauth_error(await http.post("/token", data={"resource": "https://x.example"}), 400, "invalid_target")
        location = (await http.get("/authorize", params={"to": "http://127.0.0.1:1/cb?error=e"})).headers["location"]
        assert parse_qs(urlsplit(location).query)["iss"] == [ISSUER]
        assert (await http.post("/token", data={"resource": MCP})).json()["resource"] == MCP


async def test_the_rate_limit_answers_before_any_body_is_read() -> None:
    app = protect(SDK_STANDIN, settings(rate_limit_per_minute=1), ISSUER)
    async with client(app) as http:
        assert (await http.post("/register", content=b"{}")).status_code == 200
        limited = await http.post("/register", content=b"x" * 100_000)
    assert_oauth_error(limited, 429, "temporarily_unavailable")
    assert int(limited.headers["retry-after"]) >= 1


async def test_a_zero_rate_limit_turns_the_limit_off() -> None:
    app = protect(SDK_STANDIN, settings(rate_limit_per_minute=0), ISSUER)
    async with client(app) as http:
        for _ in range(5):
            assert (await http.post("/register", content=b"{}")).status_code == 200
