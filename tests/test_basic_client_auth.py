"""HTTP Basic client authentication at /token and /revoke, client id in the header only.

RFC 6749 §2.3.1: the server MUST support Basic for clients with a password; the TypeScript
SDK and the conformance suite send the client id only there. The first half drives the
middleware alone over ASGI; the second the integrated server over real HTTP.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qsl

import httpx2
import pytest
from starlette.types import Receive, Scope, Send
from support.harness import Client, integrated_server, pkce
from support.hostile_idp import HostileIdP

from mcp_oidc_provider.web.basic_client_id import BasicClientIdMiddleware

SECRET = "s3cret/with:odd+chars"


def basic(raw: bytes | str) -> dict[str, str]:
    data = raw.encode() if isinstance(raw, str) else raw
    return {"Authorization": "Basic " + base64.b64encode(data).decode()}


class EchoForm:
    """The app behind the middleware: answers with the form it received."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        length = dict(scope["headers"]).get(b"content-length", b"").decode()
        payload = json.dumps({"form": parse_qsl(body.decode()), "content_length": length}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture
async def echo() -> Any:
    app = EchoForm()
    transport = httpx2.ASGITransport(app=BasicClientIdMiddleware(app))
    async with httpx2.AsyncClient(transport=transport, base_url="http://as.test") as http:
        yield http, app


async def test_the_basic_client_id_and_secret_are_added_to_a_form_that_lacks_them(echo: Any) -> None:
    http, _ = echo
    response = await http.post("/token", data={"grant_type": "refresh_token"}, auth=("the-client", "pw"))
    assert response.status_code == 200
    form = dict(response.json()["form"])
    assert form == {"grant_type": "refresh_token", "client_id": "the-client", "client_secret": "pw"}
    expected_body = "grant_type=refresh_token&client_id=the-client&client_secret=pw"
    assert response.json()["content_length"] == str(len(expected_body))


async def test_form_urlencoded_basic_credentials_are_decoded(echo: Any) -> None:
    http, _ = echo
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
    response = await http.post("/revoke", data={"token": "t"}, headers=basic("a%3Ab%20c:s%2F%3A"))
    assert dict(response.json()["form"]) == {"token": "t", "client_id": "a:b c", "client_secret": "s/:"}


async def test_a_body_client_id_equal_to_the_basic_one_passes_unchanged(echo: Any) -> None:
    http, _ = echo
    response = await http.post("/token", data={"client_id": "c", "x": "1"}, auth=("c", "pw"))
    assert response.json()["form"] == [["client_id", "c"], ["x", "1"]]


async def test_a_body_client_id_other_than_the_basic_one_is_401_invalid_client(echo: Any) -> None:
    http, app = echo
    response = await http.post("/token", data={"client_id": "other"}, auth=("c", "pw"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert app.calls == 0


async def test_a_secret_in_both_the_header_and_the_body_is_invalid_request(echo: Any) -> None:
    http, app = echo
    # RFC 6749 §5.2 invalid_request: "utilizes more than one mechanism for authenticating the client".
    response = await http.post("/token", data={"client_secret": "pw"}, auth=("c", "pw"))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert app.calls == 0


@pytest.mark.parametrize(
    "header",
    [
        {"Authorization": "Basic not-base64!"},
        basic("no-colon"),
        basic(":empty-id"),
        basic(b"\xff\xfe:x"),
        basic("bad%FFescape:x"),
    ],
    ids=["not-base64", "no-colon", "empty-id", "not-utf8", "bad-percent-escape"],
)
async def test_a_malformed_basic_header_is_401_invalid_client_with_a_basic_challenge(
    echo: Any, header: dict[str, str]
) -> None:
    http, app = echo
    response = await http.post("/token", data={"grant_type": "refresh_token"}, headers=header)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    # RFC 6749 §5.2: the challenge names the scheme the client tried.
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert response.headers["cache-control"] == "no-store"
    assert app.calls == 0


async def test_requests_without_basic_or_elsewhere_pass_through_untouched(echo: Any) -> None:
    http, app = echo
    bearer = await http.post("/token", data={"a": "1"}, headers={"Authorization": "Bearer xyz"})
    plain = await http.post("/revoke", data={"a": "1"})
    elsewhere = await http.post("/register", data={"a": "1"}, auth=("c", "pw"))
    assert [r.json()["form"] for r in (bearer, plain, elsewhere)] == [[["a", "1"]]] * 3
    assert app.calls == 3


async def test_error_bodies_never_echo_the_secret(echo: Any) -> None:
    http, _ = echo
    response = await http.post("/token", data={"client_id": "other"}, auth=("c", SECRET))
    assert SECRET not in response.text


# --- end to end: the integrated server over real HTTP --------------------------------------


async def register(server: Any, method: str) -> Client:
    return await server.register(token_endpoint_auth_method=method)  # type: ignore[no-any-return]


async def code_for(server: Any, client: Client) -> tuple[str, str]:
    verifier, challenge = pkce()
    query = await server.follow_to_client(server.authorize_url(client, challenge), client.redirect_uri)
    return query["code"], verifier


async def test_a_basic_client_redeems_refreshes_and_revokes_with_its_id_only_in_the_header(idp: HostileIdP) -> None:
    async with integrated_server(idp.issuer, client_id=idp.client_id, client_secret="s") as server:
        client = await register(server, "client_secret_basic")
        assert client.client_secret
        auth = (client.client_id, client.client_secret)
        code, verifier = await code_for(server, client)
        form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
        redeemed = await server.http.post(
            server.base + "/token", data={**form, "redirect_uri": client.redirect_uri}, auth=auth
        )
        assert redeemed.status_code == 200, redeemed.text
        tokens = redeemed.json()

        refreshed = await server.http.post(
            server.base + "/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=auth,
        )
        assert refreshed.status_code == 200, refreshed.text
        new = refreshed.json()
        assert (await server.mcp(new["access_token"])).status_code == 200

        revoked = await server.http.post(server.base + "/revoke", data={"token": new["access_token"]}, auth=auth)
        assert revoked.status_code == 200, revoked.text
        assert (await server.mcp(new["access_token"])).status_code == 401


async def test_a_client_secret_post_client_may_authenticate_with_basic_instead(idp: HostileIdP) -> None:
    async with integrated_server(idp.issuer, client_id=idp.client_id, client_secret="s") as server:
        client = await register(server, "client_secret_post")
        assert client.client_secret
        code, verifier = await code_for(server, client)
        response = await server.http.post(
            server.base + "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": client.redirect_uri,
            },
            auth=(client.client_id, client.client_secret),
        )
        # RFC 6749 §2.3.1: Basic MUST be supported for every client with a password.
        assert response.status_code == 200, response.text


async def test_a_wrong_basic_secret_is_401_invalid_client_and_issues_nothing(idp: HostileIdP) -> None:
    async with integrated_server(idp.issuer, client_id=idp.client_id, client_secret="s") as server:
        client = await register(server, "client_secret_basic")
        code, verifier = await code_for(server, client)
        response = await server.http.post(
            server.base + "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": client.redirect_uri,
            },
            auth=(client.client_id, "not-the-secret"),
        )
        assert response.status_code == 401
        assert response.json()["error"] in ("invalid_client", "unauthorized_client")  # 2.x / 1.x SDK
        assert "access_token" not in response.text


async def test_basic_credentials_of_one_client_with_another_clients_id_in_the_body_are_refused(
    idp: HostileIdP,
) -> None:
    async with integrated_server(idp.issuer, client_id=idp.client_id, client_secret="s") as server:
        victim = await register(server, "client_secret_basic")
        attacker = await register(server, "client_secret_basic")
        code, verifier = await code_for(server, victim)
        assert attacker.client_secret
        response = await server.http.post(
            server.base + "/token",
            data={
                "grant_type": "authorization_code",
                "client_id": victim.client_id,
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": victim.redirect_uri,
            },
            auth=(attacker.client_id, attacker.client_secret),
        )
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert "access_token" not in response.text


async def test_a_malformed_basic_header_at_revoke_is_401_invalid_client(idp: HostileIdP) -> None:
    async with integrated_server(idp.issuer, client_id=idp.client_id, client_secret="s") as server:
        response = await server.http.post(
            server.base + "/revoke", data={"token": "whatever"}, headers={"Authorization": "Basic %%%"}
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
