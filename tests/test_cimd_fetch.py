"""Client ID Metadata Documents fetched from a real https server on loopback (test CA from trustme).

The server's certificate names ``client.example``; an injected resolver maps that name to 127.0.0.1,
so a successful fetch also proves the connection went to the checked address while SNI, ``Host``
and certificate verification used the name.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
import uvicorn
from support.net import free_port

from mcp_oidc_provider.cimd import (
    MIN_TTL,
    STALE_IF_ERROR,
    CimdAddressRefused,
    CimdAuthMethodRefused,
    CimdClientIdMismatch,
    CimdContentTypeRefused,
    CimdDomainRefused,
    CimdError,
    CimdFetcher,
    CimdFetchFailed,
    CimdHttpStatus,
    CimdRedirectRefused,
    CimdResolver,
    CimdTimeout,
    CimdTooLarge,
    CimdUrlInvalid,
    DomainPolicy,
    cache_key,
    client_information,
)

HOST = "client.example"
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[Send], Awaitable[None]]


class DocumentServer:
    """An ASGI app whose routes each test scripts; counts requests per path and records Host headers."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: Counter[str] = Counter()
        self.hosts: list[str] = []
        self.base = ""

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def document(self, path: str, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "client_id": self.url(path),
            "client_name": "Loopback Test Client",
            "redirect_uris": ["http://127.0.0.1:45678/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }
        body.update(overrides)
        return body

    def serve(
        self,
        path: str,
        body: bytes | dict[str, Any],
        *,
        status: int = 200,
        headers: Sequence[tuple[str, str]] = (("content-type", "application/json"),),
        delay: float = 0,
    ) -> str:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body

        async def handler(send: Send) -> None:
            await asyncio.sleep(delay)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in headers],
                }
            )
            await send({"type": "http.response.body", "body": raw})

        self.routes[path] = handler
        return self.url(path)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        assert scope["type"] == "http"
        self.hits[scope["path"]] += 1
        self.hosts.append(dict(scope["headers"]).get(b"host", b"").decode())
        handler = self.routes.get(scope["path"])
        if handler is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await handler(send)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
async def doc_server(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DocumentServer]:
    pem = Path(tmp_path_factory.mktemp("cimd-tls")) / "server.pem"
    ca.issue_cert(HOST).private_key_and_cert_chain_pem.write_to_path(str(pem))
    app = DocumentServer()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            ssl_certfile=pem,
            ssl_keyfile=pem,
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    app.base = f"https://{HOST}:{port}"
    try:
        yield app
    finally:
        server.should_exit = True
        await task


def dns(table: dict[str, list[str]], calls: list[str] | None = None) -> Callable[[str, int], Awaitable[list[str]]]:
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise OSError("no such host")
        return table[host]

    return resolve


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def fetcher(client_ctx: ssl.SSLContext) -> CimdFetcher:
    return CimdFetcher(ssl_context=client_ctx, allow_loopback=True, resolver=dns({HOST: ["127.0.0.1"]}), timeout=2)


class Store:
    """load/save callables over a dict, recording the TTL of every save."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.ttls: dict[str, float] = {}

    async def load(self, key: str) -> dict[str, Any] | None:
        return self.data.get(key)

    async def save(self, key: str, record: dict[str, Any], ttl: float) -> None:
        self.data[key], self.ttls[key] = record, ttl


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def resolver_for(fetcher: CimdFetcher, store: Store, clock: Clock | None = None, **kwargs: Any) -> CimdResolver:
    return CimdResolver(load=store.load, save=store.save, fetcher=fetcher, clock=clock or Clock(), **kwargs)


# --- the happy path ---------------------------------------------------------------------------


async def test_a_valid_document_resolves_to_a_public_client_and_is_stored_under_its_hash(
    doc_server: DocumentServer, fetcher: CimdFetcher
) -> None:
    url = doc_server.serve(
        "/happy.json",
        doc_server.document("/happy.json"),
        headers=[("content-type", "application/json; charset=utf-8"), ("cache-control", "max-age=3600")],
    )
    store = Store()
    resolved = await resolver_for(fetcher, store).resolve(url)
    assert resolved.host == HOST and not resolved.trusted and not resolved.stale
    client = client_information(resolved.metadata)
    assert client.client_id == url and client.token_endpoint_auth_method == "none" and client.client_secret is None
    assert [str(u) for u in client.redirect_uris or []] == ["http://127.0.0.1:45678/callback"]
    assert list(store.data) == [cache_key(url)]
    assert doc_server.hosts[-1] == url.split("/")[2]  # Host header names the host, not the IP


async def test_the_host_is_resolved_once_and_the_connection_uses_that_answer(
    doc_server: DocumentServer, client_ctx: ssl.SSLContext
) -> None:
    url = doc_server.serve("/pinned.json", doc_server.document("/pinned.json"))
    calls: list[str] = []
    fetcher = CimdFetcher(
        ssl_context=client_ctx, allow_loopback=True, resolver=dns({HOST: ["127.0.0.1"]}, calls), timeout=2
    )
    fetched = await fetcher.fetch(url)
    # client.example does not exist in real DNS: the connect can only have used the checked address.
    assert fetched.document["client_id"] == url and calls == [HOST]


async def test_a_certificate_for_another_name_is_refused(
    doc_server: DocumentServer, client_ctx: ssl.SSLContext
) -> None:
    port = doc_server.base.rsplit(":", 1)[1]
    fetcher = CimdFetcher(
        ssl_context=client_ctx, allow_loopback=True, resolver=dns({"impostor.example": ["127.0.0.1"]}), timeout=2
    )
    with pytest.raises(CimdFetchFailed):
        await fetcher.fetch(f"https://impostor.example:{port}/happy.json")


async def test_a_server_not_trusted_by_the_configured_ca_is_refused(doc_server: DocumentServer) -> None:
    url = doc_server.serve("/untrusted.json", doc_server.document("/untrusted.json"))
    fetcher = CimdFetcher(
        ssl_context=ssl.create_default_context(), allow_loopback=True, resolver=dns({HOST: ["127.0.0.1"]})
    )
    with pytest.raises(CimdFetchFailed):
        await fetcher.fetch(url)


# --- bad URLs and addresses ---------------------------------------------------------------------


async def test_a_document_whose_client_id_differs_from_its_url_is_refused_and_not_stored(
    doc_server: DocumentServer, fetcher: CimdFetcher
) -> None:
    url = doc_server.serve(
        "/mismatch.json", doc_server.document("/mismatch.json", client_id="https://claude.ai/oauth/client.json")
    )
    store = Store()
    with pytest.raises(CimdClientIdMismatch) as caught:
        await resolver_for(fetcher, store).resolve(url)
    assert caught.value.oauth_error == "invalid_client" and "claude.ai" not in caught.value.description
    assert store.data == {}


@pytest.mark.parametrize("path", ["", "/"])
async def test_a_client_id_without_a_path_is_refused_before_any_request(
    doc_server: DocumentServer, fetcher: CimdFetcher, path: str
) -> None:
    before = sum(doc_server.hits.values())
    with pytest.raises(CimdUrlInvalid):
        await resolver_for(fetcher, Store()).resolve(doc_server.base + path)
    assert sum(doc_server.hits.values()) == before


async def test_an_http_client_id_is_refused_by_the_resolver_and_the_fetcher(
    doc_server: DocumentServer, fetcher: CimdFetcher
) -> None:
    url = doc_server.url("/happy.json").replace("https://", "http://")
    with pytest.raises(CimdUrlInvalid):
        await resolver_for(fetcher, Store()).resolve(url)
    with pytest.raises(CimdUrlInvalid):
        await fetcher.fetch(url)


async def test_loopback_is_refused_unless_allow_loopback_is_set(
    doc_server: DocumentServer, client_ctx: ssl.SSLContext
) -> None:
    url = doc_server.serve("/loop.json", doc_server.document("/loop.json"))
    strict = CimdFetcher(ssl_context=client_ctx, resolver=dns({HOST: ["127.0.0.1"]}))
    with pytest.raises(CimdAddressRefused):
        await strict.fetch(url)
    with pytest.raises(CimdAddressRefused):
        await strict.fetch(url.replace(HOST, "127.0.0.1"))
    with pytest.raises(CimdAddressRefused):
        await strict.fetch(url.replace(HOST, "[::1]"))
    assert doc_server.hits["/loop.json"] == 0


@pytest.mark.parametrize(
    "answer",
    [
        ["10.0.0.1"],
        ["169.254.169.254"],
        ["::ffff:10.0.0.1"],
        ["fd00:ec2::254"],
        ["93.184.215.14", "10.0.0.1"],  # one bad address among public ones is enough
        ["127.0.0.1"],
    ],
)
async def test_a_dns_name_resolving_to_a_non_public_address_is_refused(
    doc_server: DocumentServer, client_ctx: ssl.SSLContext, answer: list[str]
) -> None:
    url = doc_server.serve("/rebind.json", doc_server.document("/rebind.json"))
    fetcher = CimdFetcher(ssl_context=client_ctx, resolver=dns({HOST: answer}))
    with pytest.raises(CimdAddressRefused) as caught:
        await fetcher.fetch(url)
    assert caught.value.oauth_error == "invalid_client"
    assert doc_server.hits["/rebind.json"] == 0


async def test_allow_loopback_opens_loopback_only(doc_server: DocumentServer, client_ctx: ssl.SSLContext) -> None:
    url = doc_server.url("/happy.json")
    for answer in (["10.0.0.1"], ["169.254.169.254"], ["127.0.0.1", "192.168.0.10"]):
        fetcher = CimdFetcher(ssl_context=client_ctx, allow_loopback=True, resolver=dns({HOST: answer}))
        with pytest.raises(CimdAddressRefused):
            await fetcher.fetch(url)


async def test_a_host_that_does_not_resolve_is_a_fetch_failure(client_ctx: ssl.SSLContext) -> None:
    fetcher = CimdFetcher(ssl_context=client_ctx, resolver=dns({}))
    with pytest.raises(CimdFetchFailed):
        await fetcher.fetch("https://nowhere.example/client.json")


async def test_a_denied_domain_is_refused_before_any_request(doc_server: DocumentServer, fetcher: CimdFetcher) -> None:
    url = doc_server.serve("/denied.json", doc_server.document("/denied.json"))
    with pytest.raises(CimdDomainRefused):
        await resolver_for(fetcher, Store(), policy=DomainPolicy(deny=(HOST,))).resolve(url)
    assert doc_server.hits["/denied.json"] == 0
    trusted = await resolver_for(fetcher, Store(), policy=DomainPolicy(trusted=(HOST,))).resolve(url)
    assert trusted.trusted


# --- bad responses -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_refused_even_to_a_public_looking_url(
    doc_server: DocumentServer, fetcher: CimdFetcher, status: int
) -> None:
    url = doc_server.serve(
        f"/redirect{status}.json",
        b"",
        status=status,
        headers=[("location", "https://claude.ai/oauth/claude-code-client-metadata")],
    )
    with pytest.raises(CimdRedirectRefused):
        await fetcher.fetch(url)
    assert doc_server.hits[f"/redirect{status}.json"] == 1


async def test_a_status_other_than_200_is_refused(doc_server: DocumentServer, fetcher: CimdFetcher) -> None:
    with pytest.raises(CimdHttpStatus):
        await fetcher.fetch(doc_server.url("/missing.json"))
    url = doc_server.serve("/created.json", doc_server.document("/created.json"), status=201)
    with pytest.raises(CimdHttpStatus):
        await fetcher.fetch(url)


async def test_an_oversized_body_is_refused_whether_declared_or_streamed(
    doc_server: DocumentServer, fetcher: CimdFetcher
) -> None:
    big = doc_server.document("/big.json", client_name="x" * 6000)
    url = doc_server.serve("/big.json", big)  # uvicorn sends Content-Length
    with pytest.raises(CimdTooLarge):
        await fetcher.fetch(url)

    async def endless(send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        for _ in range(1000):  # chunked, no Content-Length: 1 MB if read to the end
            await send({"type": "http.response.body", "body": b" " * 1024, "more_body": True})
        await send({"type": "http.response.body", "body": b"{}"})

    doc_server.routes["/endless.json"] = endless
    with pytest.raises(CimdTooLarge):
        await fetcher.fetch(doc_server.url("/endless.json"))


async def test_a_document_just_under_the_size_cap_is_accepted(doc_server: DocumentServer, fetcher: CimdFetcher) -> None:
    body = doc_server.document("/fits.json")
    body["client_name"] = "n" * 100
    raw = json.dumps(body).encode()
    raw = raw[:-1] + b" " * (fetcher.max_bytes - len(raw)) + b"}"
    assert len(raw) == fetcher.max_bytes
    url = doc_server.serve("/fits.json", raw)
    assert (await fetcher.fetch(url)).document["client_id"] == url


async def test_a_slow_body_hits_the_total_time_limit(doc_server: DocumentServer, client_ctx: ssl.SSLContext) -> None:
    async def dribble(send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        for _ in range(50):  # each chunk arrives well within a read timeout; the whole does not
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            await asyncio.sleep(0.1)
        await send({"type": "http.response.body", "body": b"{}"})

    doc_server.routes["/slow.json"] = dribble
    fetcher = CimdFetcher(ssl_context=client_ctx, allow_loopback=True, resolver=dns({HOST: ["127.0.0.1"]}), timeout=0.5)
    started = time.monotonic()
    with pytest.raises(CimdTimeout) as caught:
        await fetcher.fetch(doc_server.url("/slow.json"))
    assert time.monotonic() - started < 1.5
    assert caught.value.transient


async def test_slow_response_headers_hit_the_time_limit(doc_server: DocumentServer, client_ctx: ssl.SSLContext) -> None:
    url = doc_server.serve("/late.json", doc_server.document("/late.json"), delay=3)
    fetcher = CimdFetcher(ssl_context=client_ctx, allow_loopback=True, resolver=dns({HOST: ["127.0.0.1"]}), timeout=0.5)
    with pytest.raises(CimdTimeout):
        await fetcher.fetch(url)


@pytest.mark.parametrize(
    "content_type", [None, "text/html", "text/plain", "application/javascript", "application/jsonx"]
)
async def test_a_document_not_served_as_json_is_refused(
    doc_server: DocumentServer, fetcher: CimdFetcher, content_type: str | None
) -> None:
    path = "/ctype-" + (content_type or "none").replace("/", "_")
    headers = [("content-type", content_type)] if content_type else []
    url = doc_server.serve(path, doc_server.document(path), headers=headers)
    with pytest.raises(CimdContentTypeRefused):
        await fetcher.fetch(url)


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON; charset=utf-8", "application/cimd+json"]
)
async def test_json_and_structured_json_content_types_are_accepted(
    doc_server: DocumentServer, fetcher: CimdFetcher, content_type: str
) -> None:
    path = "/ok-" + content_type.replace("/", "_").replace(" ", "").replace(";", "_")
    url = doc_server.serve(path, doc_server.document(path), headers=[("content-type", content_type)])
    assert (await fetcher.fetch(url)).document["client_id"] == url


async def test_a_secret_based_auth_method_is_refused_and_not_stored(
    doc_server: DocumentServer, fetcher: CimdFetcher
) -> None:
    url = doc_server.serve(
        "/secret.json", doc_server.document("/secret.json", token_endpoint_auth_method="client_secret_basic")
    )
    store = Store()
    with pytest.raises(CimdAuthMethodRefused):
        await resolver_for(fetcher, store).resolve(url)
    assert store.data == {}


# --- caching ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        ("max-age=1", MIN_TTL),
        ("max-age=3600", 3600),
        ("max-age=9999999", 86400),
        ("no-store", MIN_TTL),
        (None, MIN_TTL),
    ],
)
async def test_cache_lifetime_follows_cache_control_clamped_and_the_store_ttl_adds_the_stale_window(
    doc_server: DocumentServer, fetcher: CimdFetcher, cache_control: str | None, ttl: int
) -> None:
    path = f"/ttl-{ttl}-{cache_control}".replace(" ", "").replace("=", "")
    headers = [("content-type", "application/json")] + ([("cache-control", cache_control)] if cache_control else [])
    url = doc_server.serve(path, doc_server.document(path), headers=headers)
    store, clock = Store(), Clock()
    resolver = resolver_for(fetcher, store, clock)
    first = await resolver.resolve(url)
    assert first.fresh_until == clock.now + ttl
    assert store.ttls[cache_key(url)] == ttl + STALE_IF_ERROR

    clock.now += ttl - 1
    await resolver.resolve(url)
    assert doc_server.hits[path] == 1  # still fresh: served from the store
    clock.now += 2
    await resolver.resolve(url)
    assert doc_server.hits[path] == 2  # expired: fetched again


async def test_a_failed_refetch_serves_the_stored_copy_for_a_bounded_time(
    doc_server: DocumentServer, fetcher: CimdFetcher
) -> None:
    path = "/stale.json"
    url = doc_server.serve(path, doc_server.document(path))
    store, clock = Store(), Clock()
    resolver = resolver_for(fetcher, store, clock)
    fresh = await resolver.resolve(url)

    doc_server.serve(path, b"upstream down", status=503, headers=[("content-type", "text/plain")])
    clock.now = fresh.fresh_until + 10
    stale = await resolver.resolve(url)
    assert stale.stale and stale.metadata == fresh.metadata

    clock.now = fresh.fresh_until + STALE_IF_ERROR + 1
    with pytest.raises(CimdFetchFailed):
        await resolver.resolve(url)


async def test_a_refetch_that_answers_wrongly_is_refused_not_served_stale(
    doc_server: DocumentServer, fetcher: CimdFetcher
) -> None:
    path = "/changed.json"
    url = doc_server.serve(path, doc_server.document(path))
    store, clock = Store(), Clock()
    resolver = resolver_for(fetcher, store, clock)
    fresh = await resolver.resolve(url)
    doc_server.serve(path, doc_server.document(path, redirect_uris=["http://evil.example/cb"]))
    clock.now = fresh.fresh_until + 10
    with pytest.raises(CimdError):
        await resolver.resolve(url)
    doc_server.serve(path, b"", status=302, headers=[("location", "https://example.com/")])
    with pytest.raises(CimdRedirectRefused):
        await resolver.resolve(url)


async def test_concurrent_resolutions_of_one_url_share_a_single_fetch(
    doc_server: DocumentServer, fetcher: CimdFetcher
) -> None:
    path = "/coalesce.json"
    url = doc_server.serve(path, doc_server.document(path), delay=0.3)
    resolver = resolver_for(fetcher, Store())
    results: list[Any] = []

    async def one() -> None:
        results.append(await resolver.resolve(url))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(one)
    assert len(results) == 10 and doc_server.hits[path] == 1


async def test_concurrent_failures_are_shared_too_and_each_caller_gets_an_error(
    doc_server: DocumentServer, fetcher: CimdFetcher
) -> None:
    path = "/coalesce-fail.json"
    url = doc_server.serve(path, b"{}", status=500, delay=0.3)
    resolver = resolver_for(fetcher, Store())
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            await resolver.resolve(url)
        except CimdFetchFailed as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    assert len(errors) == 5 and len({id(e) for e in errors}) == 5 and doc_server.hits[path] == 1
