"""Clients that identify with a Client ID Metadata Document (MCP 2026-07-28 "Client Registration").

The documents are served over https on loopback by a server whose certificate comes from a test
CA (trustme); the authorization server trusts that CA (``cimd_ca_bundle``) and, for loopback
only, ``cimd_allow_loopback``. The Python SDK client picks CIMD by itself when the metadata says
``client_id_metadata_document_supported`` and lists ``none``.
"""

from __future__ import annotations

import httpx2
import pytest
from client import MemoryTokenStorage, call_whoami  # examples/client.py
from key_value.aio.stores.memory import MemoryStore
from support.cimd_documents import Documents, ca, ca_bundle, cimd_server, documents
from support.harness import Harness, integrated_server, pkce

__all__ = ["ca", "ca_bundle", "cimd_server", "documents"]  # fixtures

from mcp_oidc_provider.cimd import cache_key


async def authorize_status(server: Harness, client_id: str, redirect_uri: str) -> httpx2.Response:
    _, challenge = pkce()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "s",
    }
    return await server.http.get(server.base + "/authorize", params=query, follow_redirects=False)


async def stored_documents(server: Harness) -> list[str]:
    assert isinstance(server.store, MemoryStore)
    return list(await server.store.keys(collection="mcp-oidc-client-documents"))


async def test_the_metadata_advertises_metadata_documents_and_public_clients(cimd_server: Harness) -> None:
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        document = (await cimd_server.http.get(cimd_server.base + path)).json()
        assert document["client_id_metadata_document_supported"] is True, path
        assert "none" in document["token_endpoint_auth_methods_supported"], path
        assert document["issuer"] == cimd_server.provider.issuer if cimd_server.provider else False


async def test_the_python_sdk_client_logs_in_with_its_metadata_document_url_and_refreshes(
    cimd_server: Harness, documents: Documents
) -> None:
    client_id = documents.serve_document("/python-client.json")
    storage = MemoryTokenStorage()
    identity = await call_whoami(
        cimd_server.mcp_url,
        headless=True,
        user="alice",
        storage=storage,
        client_metadata_url=client_id,
        redirect_uri=documents.redirect_uri,
    )
    assert identity["sub"] == "alice"
    assert identity["client_id"] == client_id  # no registration: the URL is the client id
    assert await stored_documents(cimd_server) == [cache_key(client_id)]

    assert storage.tokens is not None and storage.tokens.refresh_token
    old = storage.tokens.refresh_token
    form = {"grant_type": "refresh_token", "refresh_token": old, "client_id": client_id}
    refreshed = await cimd_server.http.post(cimd_server.base + "/token", data=form)
    assert refreshed.status_code == 200, refreshed.text
    assert (await cimd_server.mcp(refreshed.json()["access_token"])).status_code == 200
    replayed = await cimd_server.http.post(cimd_server.base + "/token", data=form)
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("case", "path"),
    [
        ("client_id in the document differs from the URL", "/mismatch.json"),
        ("secret-based auth method", "/secret.json"),
        ("not JSON", "/not-json.json"),
        ("oversized", "/huge.json"),
        ("redirect to another document", "/redirect.json"),
        ("not found", "/missing.json"),
        ("javascript redirect URI", "/bad-redirect.json"),
    ],
)
async def test_a_bad_metadata_document_gets_an_oauth_error_and_nothing_is_stored(
    cimd_server: Harness, documents: Documents, case: str, path: str
) -> None:
    good = documents.serve_document("/good.json")
    if path == "/mismatch.json":
        documents.serve_document(path, client_id=good)
    elif path == "/secret.json":
        documents.serve_document(path, token_endpoint_auth_method="client_secret_basic")
    elif path == "/not-json.json":
        documents.serve(path, b"<html>hello</html>", content_type="text/html")
    elif path == "/huge.json":
        documents.serve_document(path, client_name="x" * 100_000)
    elif path == "/redirect.json":
        documents.serve(path, good.encode(), status=302)
    elif path == "/bad-redirect.json":
        documents.serve_document(path, redirect_uris=["javascript:alert(1)"])
    response = await authorize_status(cimd_server, documents.url(path), documents.redirect_uri)
    assert response.status_code == 400, (case, response.status_code, response.text)
    assert response.json()["error"] in ("invalid_request", "invalid_client"), case
    assert "location" not in response.headers, case
    assert await stored_documents(cimd_server) == [], case


@pytest.mark.parametrize(
    "client_id",
    [
        "http://localhost/client.json",  # https only
        "https://localhost",  # a path is required
        "https://localhost/",  # a path other than /
        "https://127.0.0.1:1/c.json#frag",
    ],
)
async def test_a_client_id_url_that_is_not_a_metadata_document_url_is_refused(
    cimd_server: Harness, documents: Documents, client_id: str
) -> None:
    response = await authorize_status(cimd_server, client_id, documents.redirect_uri)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert await stored_documents(cimd_server) == []


async def test_a_redirect_uri_the_document_does_not_list_is_refused(cimd_server: Harness, documents: Documents) -> None:
    client_id = documents.serve_document("/listed.json")
    response = await authorize_status(cimd_server, client_id, "http://127.0.0.1:1/elsewhere")
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_a_loopback_document_is_refused_unless_the_development_setting_allows_it(
    dev_idp: str, documents: Documents, ca_bundle: str
) -> None:
    client_id = documents.serve_document("/loopback.json")
    async with integrated_server(dev_idp, cimd_ca_bundle=ca_bundle) as server:
        response = await authorize_status(server, client_id, documents.redirect_uri)
        assert response.status_code == 400
        assert await stored_documents(server) == []


async def test_a_denied_domain_is_refused(dev_idp: str, documents: Documents, ca_bundle: str) -> None:
    client_id = documents.serve_document("/denied.json")
    async with integrated_server(
        dev_idp, cimd_allow_loopback=True, cimd_ca_bundle=ca_bundle, cimd_denied_domains=("localhost",)
    ) as server:
        response = await authorize_status(server, client_id, documents.redirect_uri)
        assert response.status_code == 400


async def test_with_registration_off_the_metadata_omits_it_and_register_answers_an_oauth_error(dev_idp: str) -> None:
    async with integrated_server(dev_idp, dynamic_registration=False) as server:
        metadata = (await server.http.get(server.base + "/.well-known/oauth-authorization-server")).json()
        assert "registration_endpoint" not in metadata
        assert metadata["client_id_metadata_document_supported"] is True
        response = await server.http.post(server.base + "/register", json={"redirect_uris": ["http://127.0.0.1/cb"]})
        assert response.status_code == 403
        assert response.json()["error"] == "access_denied"
        assert response.headers["cache-control"] == "no-store"
