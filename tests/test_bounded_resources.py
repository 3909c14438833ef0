"""Issue 8 §4, §5: bounded resources and input hygiene, as an attacker or a client sees them.

Real HTTP on loopback against the integrated example; the store is a Redis DB under a unique
key prefix so a test can count and weigh what a flood wrote.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import pytest
import redis.asyncio as aioredis
from key_value.aio.wrappers.prefix_collections import PrefixCollectionsWrapper
from support.harness import Client, Harness, integrated_server, pkce

from mcp_oidc_provider import store_from_url

MCP_MAJOR = int(importlib.metadata.version("mcp").split(".")[0])
REDIS_URL = "redis://127.0.0.1:6379/12"


@pytest.fixture
async def redis_store() -> AsyncIterator[tuple[Any, aioredis.Redis, str]]:
    """Redis db 12, our collections under a unique prefix; only those keys are deleted afterwards."""
    raw = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    prefix = f"test-bounded-{uuid.uuid4().hex}"
    base = store_from_url(REDIS_URL)
    try:
        yield PrefixCollectionsWrapper(base, prefix), raw, prefix
    finally:
        async for key in raw.scan_iter(match=f"{prefix}__*"):
            await raw.delete(key)
        await raw.aclose()
        await base.close()  # type: ignore[attr-defined]


async def store_size(raw: aioredis.Redis, prefix: str, collection: str = "*") -> tuple[int, int]:
    """(keys, bytes of their values) the provider holds, in one collection or in all."""
    keys = [key async for key in raw.scan_iter(match=f"{prefix}__{collection}::*")]
    sizes = [await raw.strlen(key) for key in keys]
    return len(keys), sum(sizes)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def assert_oauth_error(response: httpx2.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


async def login(server: Harness, client: Client, challenge: str) -> str:
    query = await server.browser_login(server.authorize_url(client, challenge), client.redirect_uri)
    assert "code" in query, query
    return query["code"]


# --- registration: caps, what is stored, how long, how often --------------------------------


async def test_a_registration_flood_grows_the_store_by_at_most_the_register_budget(
    dev_idp: str, redis_store: tuple[Any, aioredis.Redis, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store, raw, prefix = redis_store
    flood = 50
    async with integrated_server(dev_idp, store=store, register_rate_limit_per_minute=10) as server:
        before = await store_size(raw, prefix)
        statuses = []
        for i in range(flood):
            body = {"redirect_uris": [f"http://127.0.0.1:{40000 + i}/cb"], "client_name": f"flood {i}"}
            statuses.append((await server.http.post(server.base + "/register", json=body)).status_code)
        after = await store_size(raw, prefix)
        # /authorize keeps its own, larger budget: the flood did not use it up.
        authorize = await server.http.get(server.base + "/authorize", params={"client_id": "x"})

    assert statuses == [201] * 10 + [429] * (flood - 10)
    assert after[0] - before[0] == 10
    assert after[1] - before[1] < 10 * 2048
    assert authorize.status_code != 429
    with capsys.disabled():
        print(f"\n[store size] registration flood of {flood}: {before} -> {after} (keys, bytes)")


async def test_a_64_kib_registration_stores_less_than_2_kb_and_echoes_only_what_is_stored(
    dev_idp: str, redis_store: tuple[Any, aioredis.Redis, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store, raw, prefix = redis_store
    body: dict[str, Any] = {
        "redirect_uris": ["http://127.0.0.1:9/callback"],
        "client_name": "\u202eevil\u200b client\x07",
        "grant_types": ["authorization_code", "refresh_token", *["urn:x:" + "g" * 90] * 100],
        "contacts": ["a" * 100 + "@example.com"] * 200,
        "logo_uri": "https://logo.example/" + "l" * 1500,
        "software_id": "s" * 2000,
        "jwks": {"keys": [{"kty": "oct", "k": "k" * 2000}] * 3},
        "unknown_member": "u" * 5000,
    }
    body["padding"] = "p" * (64 * 1024 - 200 - len(httpx2.Request("POST", "/", json=body).content))
    content = httpx2.Request("POST", "/", json=body).content
    assert 63 * 1024 < len(content) <= 64 * 1024
    async with integrated_server(dev_idp, store=store) as server:
        response = await server.http.post(
            server.base + "/register", content=content, headers={"content-type": "application/json"}
        )
        keys, size = await store_size(raw, prefix, "mcp-oidc-clients")

    assert response.status_code == 201, response.text
    echoed = response.json()
    assert echoed["client_name"] == "evil client"  # bidi override, zero-width space and BEL gone
    assert echoed["grant_types"] == ["authorization_code", "refresh_token"]
    for dropped in ("contacts", "logo_uri", "software_id", "jwks", "unknown_member", "padding"):
        assert dropped not in echoed
    assert keys == 1
    assert size < 2048
    with capsys.disabled():
        print(f"\n[store size] a {len(content)}-byte registration body stored {size} bytes")


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"redirect_uris": [f"http://127.0.0.1:{9000 + i}/cb" for i in range(11)]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://127.0.0.1:9/" + "a" * 2000]}, "invalid_redirect_uri"),
        ({"scope": " ".join(["mcp"] * 251)}, "invalid_client_metadata"),
        ({"client_name": "n" * 101}, "invalid_client_metadata"),
    ],
    ids=["11 redirect URIs", "a 2020-character redirect URI", "a 1003-character scope", "a 101-character name"],
)
async def test_a_registration_over_a_cap_gets_an_rfc7591_error_and_stores_nothing(
    dev_idp: str, redis_store: tuple[Any, aioredis.Redis, str], extra: dict[str, Any], error: str
) -> None:
    store, raw, prefix = redis_store
    async with integrated_server(dev_idp, store=store) as server:
        body = {"redirect_uris": ["http://127.0.0.1:9/cb"], "client_name": "capped", **extra}
        response = await server.http.post(server.base + "/register", json=body)
        keys, _ = await store_size(raw, prefix, "mcp-oidc-clients")

    assert_oauth_error(response, 400, error)  # RFC 7591 §3.2.2
    assert keys == 0


async def test_a_name_of_100_visible_characters_padded_with_bidi_controls_is_accepted_clean(server: Harness) -> None:
    name = "\u202e" * 300 + "n" * 100 + "\u2066\x00" * 100
    client = await server.register(client_name=name)
    assert client.raw["client_name"] == "n" * 100


async def test_an_unused_registration_expires_within_hours_and_a_redeemed_code_gives_it_the_client_ttl(
    dev_idp: str, redis_store: tuple[Any, aioredis.Redis, str]
) -> None:
    store, raw, prefix = redis_store
    async with integrated_server(dev_idp, store=store, unused_client_ttl=6 * 3600) as server:
        client = await server.register()
        key = f"{prefix}__mcp-oidc-clients::{client.client_id}"
        registered_ttl = await raw.ttl(key)
        # Using the client at /authorize (the SDK loads it) does not renew it.
        await server.http.get(server.authorize_url(client, pkce()[1]))
        after_authorize_ttl = await raw.ttl(key)
        await server.login_and_redeem(client)
        redeemed_ttl = await raw.ttl(key)
        client_ttl = server.provider.settings.client_ttl  # type: ignore[union-attr]

    assert 6 * 3600 - 60 < registered_ttl <= 6 * 3600
    assert after_authorize_ttl <= registered_ttl
    assert client_ttl - 60 < redeemed_ttl <= client_ttl


async def test_register_responses_are_not_cached(server: Harness) -> None:
    created = await server.http.post(server.base + "/register", json={"redirect_uris": ["http://127.0.0.1:9/cb"]})
    refused = await server.http.post(server.base + "/register", json={"redirect_uris": ["javascript:alert(1)"]})

    assert created.status_code == 201
    assert refused.status_code == 400
    for response in (created, refused):
        # RFC 7591 §3.2.1: the response carries the client secret.
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"


# --- slowloris -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/token", "/register"])
async def test_a_body_sent_as_a_slow_trickle_is_cut_off_within_the_read_deadline(
    dev_idp: str, path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    deadline = 1.0
    async with integrated_server(dev_idp, body_read_timeout_seconds=deadline) as server:
        parts = urlsplit(server.base)
        content_type = "application/json" if path == "/register" else "application/x-www-form-urlencoded"
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
            "Content-Length: 1000\r\n\r\n"
        ).encode()
        async with await anyio.connect_tcp(parts.hostname or "127.0.0.1", parts.port or 80) as sock:
            await sock.send(head)
            started = time.monotonic()
            received = b""
            closed = False

            async def trickle() -> None:
                for _ in range(100):  # one byte every 0.2 s: 20 s to send the whole body
                    await anyio.sleep(0.2)
                    try:
                        await sock.send(b"a")
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        return

            with anyio.move_on_after(deadline + 5):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(trickle)
                    while True:
                        try:
                            chunk = await sock.receive()
                        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                            closed = True
                            break
                        received += chunk
                    tasks.cancel_scope.cancel()
            elapsed = time.monotonic() - started

    status_line, _, rest = received.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), received  # RFC 9110 §15.5.9
    assert b'"error":"invalid_request"' in rest.replace(b" ", b"")
    assert closed, "the server closes the connection"
    assert deadline <= elapsed < deadline + 1.5, elapsed
    with capsys.disabled():
        print(f"\n[slowloris] {path}: 408 and closed {elapsed:.2f} s after the headers (limit {deadline} s)")


# --- /token input hygiene ------------------------------------------------------------------


@pytest.mark.parametrize(
    "verifier",
    ["a", "\u00fc" * 50, "a" * 129, "a" * 42 + "!"],
    ids=["1 character", "non-ASCII", "129 characters", "outside the alphabet"],
)
async def test_a_code_verifier_outside_rfc7636_is_refused_even_when_it_matches_and_the_code_survives(
    server: Harness, verifier: str
) -> None:
    client = await server.register()
    code = await login(server, client, s256(verifier))

    refused = await server.redeem(client, code, verifier)
    # The code was not consumed: the SDK still finds it and judges the (well-formed) verifier.
    wrong = await server.redeem(client, code, "w" * 43)

    assert_oauth_error(refused, 400, "invalid_grant")  # RFC 7636 §4.6
    assert "43 to 128" in refused.json()["error_description"]
    assert_oauth_error(wrong, 400, "invalid_grant")
    assert "verifier" in wrong.json()["error_description"].lower()


async def test_two_code_verifiers_in_one_request_are_refused(server: Harness) -> None:
    client = await server.register()
    verifier, challenge = pkce()
    code = await login(server, client, challenge)
    form = f"grant_type=authorization_code&code={code}&redirect_uri={client.redirect_uri}&client_id={client.client_id}"
    form += f"&client_secret={client.client_secret}&code_verifier={'x' * 43}&code_verifier={verifier}"

    response = await server.http.post(
        server.base + "/token", content=form, headers={"content-type": "application/x-www-form-urlencoded"}
    )

    assert_oauth_error(response, 400, "invalid_grant")


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def test_a_multipart_token_request_cannot_skip_the_resource_check(server: Harness) -> None:
    client = await server.register()
    verifier, challenge = pkce()
    code = await login(server, client, challenge)
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": client.redirect_uri,
        "client_id": client.client_id,
        "client_secret": client.client_secret or "",
        "resource": "https://evil.example/mcp",
    }
    body, content_type = multipart(fields)

    bypass = await server.http.post(server.base + "/token", content=body, headers={"content-type": content_type})
    foreign = await server.redeem_with(client, code, verifier, resource="https://evil.example/mcp")

    assert_oauth_error(bypass, 400, "invalid_request")  # RFC 6749 §3.2: urlencoded only
    assert foreign.status_code == 400  # the same request, urlencoded: RFC 8707 invalid_target
    assert foreign.json()["error"] in ("invalid_target", "invalid_request")


@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect"])
@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=x", "application/json", "text/plain", None])
async def test_token_revoke_and_introspect_take_urlencoded_forms_only(
    server: Harness, path: str, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await server.http.post(server.base + path, content=b"token=x&client_id=y", headers=headers)

    # RFC 6749 §3.2, RFC 7009 §2.1, RFC 7662 §2.1.
    assert_oauth_error(response, 400, "invalid_request")


# --- what we advertise and issue -------------------------------------------------------------


async def test_the_oidc_discovery_document_claims_no_oidc_behaviour_it_lacks(dev_idp: str) -> None:
    async with integrated_server(dev_idp, scopes=("mcp", "openid")) as server:
        document = (await server.http.get(server.base + "/.well-known/openid-configuration")).json()

    # What TS-based clients need to parse the document at all (OIDC Discovery §3 REQUIRED).
    assert document["jwks_uri"].endswith("/jwks")
    assert document["subject_types_supported"] == ["public"]
    assert document["id_token_signing_alg_values_supported"]
    # Nothing that promises ID tokens or a userinfo endpoint.
    assert "openid" not in document.get("scopes_supported", [])
    assert document["response_types_supported"] == ["code"]
    for member in ("userinfo_endpoint", "claims_supported", "end_session_endpoint"):
        assert member not in document
    # Absent, OIDC Discovery §3 would read request_uri support as true.
    assert document["request_uri_parameter_supported"] is False
    assert document["grant_types_supported"] == ["authorization_code", "refresh_token"]


async def test_a_client_registered_without_the_refresh_token_grant_gets_no_refresh_token(server: Harness) -> None:
    if MCP_MAJOR < 2:
        # mcp 1.x's own handler refuses such a registration (RFC 7591 §3.2.2): no such client exists there.
        refused = await server.http.post(
            server.base + "/register",
            json={"redirect_uris": ["http://127.0.0.1:9/cb"], "grant_types": ["authorization_code"]},
        )
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_client_metadata"
        return
    client = await server.register(grant_types=["authorization_code"])
    assert client.raw["grant_types"] == ["authorization_code"]

    _, tokens = await server.login_and_redeem(client)

    assert "access_token" in tokens
    assert "refresh_token" not in tokens


async def test_a_client_registered_with_the_refresh_token_grant_gets_a_refresh_token(server: Harness) -> None:
    _, tokens = await server.login_and_redeem()
    assert tokens["refresh_token"]
