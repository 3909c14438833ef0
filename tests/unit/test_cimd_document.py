"""Client ID Metadata Document validation, Cache-Control lifetimes and the domain policy (no network)."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_oidc_provider.cimd import (
    MAX_TTL,
    MIN_TTL,
    CimdAuthMethodRefused,
    CimdClientIdMismatch,
    CimdDocumentInvalid,
    CimdError,
    CimdRedirectUriRefused,
    CimdUrlInvalid,
    DomainPolicy,
    cache_key,
    cache_ttl,
    clean_display_text,
    client_information,
    ensure_client_id_url,
    is_client_id_url,
    validate_client_document,
)
from mcp_oidc_provider.cimd.fetch import parse_json_object

pytestmark = pytest.mark.unit

URL = "https://app.example.com/oauth/client.json"


def doc(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "client_id": URL,
        "client_name": "Example App",
        "redirect_uris": ["http://127.0.0.1:33418/callback", "https://app.example.com/cb"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


# --- the URL itself (draft §3) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://app.example.com/oauth/client.json", "app.example.com"),
        ("https://app.example.com:8443/c", "app.example.com"),
        ("https://app.example.com/c?v=1", "app.example.com"),
        ("https://[2606:4700::1]/client", "2606:4700::1"),
    ],
)
def test_https_urls_with_a_path_are_client_id_urls(url: str, host: str) -> None:
    assert ensure_client_id_url(url) == host
    assert is_client_id_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://app.example.com/client.json",  # draft §3: MUST use https
        "HTTPS://app.example.com/client.json",
        "https://app.example.com",  # MUST contain a path
        "https://app.example.com/",
        "https://app.example.com/client#frag",  # MUST NOT contain a fragment
        "https://app.example.com/client#",
        "https://user:pw@app.example.com/client",  # MUST NOT contain userinfo
        "https://user@app.example.com/client",
        "https://app.example.com/a/../client",  # MUST NOT contain dot segments
        "https://app.example.com/./client",
        "https://app.example.com/a/%2e%2E/client",
        "https://app.example.com/a/..",
        "https:///client",
        "https://app.example.com:99999/client",
        "https://app.example.com/cli ent",
        "https://app.example.com/client\\x",
        "https://äpp.example.com/client",
        "https://app.example.com/" + "a" * 300,
    ],
)
def test_urls_breaking_the_client_identifier_rules_are_refused(url: str) -> None:
    with pytest.raises(CimdUrlInvalid) as caught:
        ensure_client_id_url(url)
    assert caught.value.oauth_error == "invalid_client"


def test_ensure_client_id_url_returns_the_lower_cased_host_for_the_consent_page() -> None:
    assert ensure_client_id_url("https://App.Example.COM/client") == "app.example.com"


def test_registered_client_ids_are_not_mistaken_for_metadata_urls() -> None:
    assert not is_client_id_url("3f9c2d0e-registered")
    assert not is_client_id_url("http://app.example.com/client")


# --- the document (draft §4, §4.1) ----------------------------------------------------------


def test_a_valid_document_becomes_public_client_metadata_the_sdk_accepts() -> None:
    metadata = validate_client_document(URL, doc(contacts=["a@example.com"], extra="ignored", scope="openid mcp"))
    assert metadata == {
        "client_id": URL,
        "token_endpoint_auth_method": "none",
        "redirect_uris": ["http://127.0.0.1:33418/callback", "https://app.example.com/cb"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": "openid mcp",
        "client_name": "Example App",
    }
    client = client_information(metadata)
    assert client.client_id == URL and client.client_secret is None
    assert [str(u) for u in client.redirect_uris or []] == metadata["redirect_uris"]


def test_absent_auth_method_means_none_and_absent_grant_types_keep_the_sdk_default() -> None:
    metadata = validate_client_document(URL, doc(token_endpoint_auth_method=None, grant_types=None))
    assert metadata["token_endpoint_auth_method"] == "none" and "grant_types" not in metadata
    assert client_information(metadata).grant_types == ["authorization_code", "refresh_token"]


@pytest.mark.parametrize(
    "client_id",
    [URL + "x", "https://app.example.com:443/oauth/client.json", "https://APP.example.com/oauth/client.json", None, 7],
)
def test_a_document_whose_client_id_is_not_exactly_its_url_is_refused(client_id: object) -> None:
    with pytest.raises(CimdClientIdMismatch):
        validate_client_document(URL, doc(client_id=client_id) if client_id is not None else doc(client_id=None))


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "client_secret_jwt", "my_secret"])
def test_shared_secret_auth_methods_are_refused(method: str) -> None:
    with pytest.raises(CimdAuthMethodRefused) as caught:
        validate_client_document(URL, doc(token_endpoint_auth_method=method))
    assert caught.value.oauth_error == "invalid_client"


@pytest.mark.parametrize("member", [{"client_secret": "s3cret"}, {"client_secret_expires_at": 0}])
def test_a_client_secret_member_is_refused_and_not_echoed(member: dict[str, Any]) -> None:
    with pytest.raises(CimdAuthMethodRefused) as caught:
        validate_client_document(URL, doc(**member))
    assert "s3cret" not in caught.value.description


def test_private_key_jwt_is_refused_because_the_token_endpoint_cannot_verify_assertions() -> None:
    with pytest.raises(CimdAuthMethodRefused):
        validate_client_document(
            URL, doc(token_endpoint_auth_method="private_key_jwt", jwks_uri="https://app.example.com/jwks")
        )


def test_private_key_material_in_jwks_is_refused() -> None:
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "private"}]}
    with pytest.raises(CimdAuthMethodRefused):
        validate_client_document(URL, doc(jwks=jwks))


@pytest.mark.parametrize(
    "redirect_uris",
    [None, [], "https://app.example.com/cb", [7], ["https://ok.example/cb"] * 0 + ["x"] * 21],
)
def test_missing_or_malformed_redirect_uris_are_refused(redirect_uris: object) -> None:
    with pytest.raises(CimdDocumentInvalid):
        validate_client_document(URL, doc(redirect_uris=redirect_uris))


@pytest.mark.parametrize(
    "uri",
    [
        "http://evil.example/cb",
        "javascript:alert(1)",
        "https://app.example.com/cb#frag",
        "evil://steal",
        "data:text/html,x",
        "https://user@app.example.com/cb",
    ],
)
def test_redirect_uris_refused_by_the_registration_policy_are_refused_here_too(uri: str) -> None:
    with pytest.raises(CimdRedirectUriRefused):
        validate_client_document(URL, doc(redirect_uris=["https://app.example.com/cb", uri]))


def test_the_redirect_policy_options_of_registration_apply() -> None:
    with pytest.raises(CimdRedirectUriRefused):
        validate_client_document(URL, doc(redirect_uris=["myapp://cb"]))
    assert validate_client_document(URL, doc(redirect_uris=["myapp://cb"]), private_use_schemes=["myapp"])
    with pytest.raises(CimdRedirectUriRefused):
        validate_client_document(URL, doc(), allowed_redirect_hosts=["other.example"])
    with pytest.raises(CimdRedirectUriRefused):  # SEP-837: web clients get no loopback
        validate_client_document(URL, doc(application_type="web"))


@pytest.mark.parametrize(
    "overrides",
    [
        {"grant_types": ["client_credentials"]},
        {"grant_types": ["authorization_code", "implicit"]},
        {"grant_types": []},
        {"response_types": ["token"]},
        {"response_types": ["code", "id_token"]},
        {"application_type": "desktop"},
        {"scope": 'a"b'},
        {"scope": "a  b"},
        {"scope": "x" * 1001},
        {"client_name": 5},
        {"client_name": "n" * 801},
    ],
)
def test_members_outside_what_this_server_supports_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(CimdDocumentInvalid):
        validate_client_document(URL, doc(**overrides))


def test_client_name_is_stripped_of_bidi_and_control_characters() -> None:
    spoof = "Good\u202eppA liveE\u200b\x00\x1b[31m App\n\tName"
    metadata = validate_client_document(URL, doc(client_name=spoof))
    assert metadata["client_name"] == "GoodppA liveE[31m App Name"
    assert clean_display_text("\u200f\u202a") == ""
    assert "client_name" not in validate_client_document(URL, doc(client_name="\u202e\u200b"))
    assert len(clean_display_text("x" * 500)) == 200


def test_display_links_must_be_https_or_are_dropped() -> None:
    metadata = validate_client_document(
        URL, doc(logo_uri="javascript:alert(1)", client_uri="https://app.example.com", tos_uri="http://x.example/t")
    )
    assert metadata.get("client_uri") == "https://app.example.com"
    assert "logo_uri" not in metadata and "tos_uri" not in metadata


def test_every_refusal_is_invalid_client_with_a_description_safe_for_an_error_response() -> None:
    import mcp_oidc_provider.cimd.errors as errors

    allowed = {chr(c) for c in range(0x20, 0x7F)} - {'"', "\\"}  # RFC 6749 §4.1.2.1 error_description
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, CimdError):
            err = cls()
            assert err.oauth_error == "invalid_client"
            assert set(err.description) <= allowed, cls


# --- JSON parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"[]", b'"x"', b"not json", b'{"a": NaN}', b'{"a":1,"a":2}', b"\xff\xfe{}", b"[" * 3000 + b"]" * 3000],
)
def test_bodies_that_are_not_one_plain_json_object_are_refused(body: bytes) -> None:
    with pytest.raises(CimdDocumentInvalid):
        parse_json_object(body)


# --- Cache-Control (draft §5.2) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "ttl"),
    [
        (None, MIN_TTL),
        ("", MIN_TTL),
        ("max-age=3600", 3600),
        ("public, max-age=3600", 3600),
        ("max-age=1", MIN_TTL),
        ("max-age=0", MIN_TTL),
        ("max-age=31536000", MAX_TTL),
        ("no-store", MIN_TTL),
        ("no-cache, max-age=3600", MIN_TTL),
        ("max-age=3600, NO-STORE", MIN_TTL),
        ("s-maxage=7200, max-age=600", 7200),
        ('max-age="900"', 900),
        ("max-age=-5", MIN_TTL),
        ("max-age=abc", MIN_TTL),
    ],
)
def test_cache_lifetime_follows_cache_control_within_five_minutes_and_a_day(header: str | None, ttl: int) -> None:
    assert cache_ttl(header) == ttl


def test_the_cache_key_is_the_sha256_of_the_url() -> None:
    key = cache_key(URL)
    assert len(key) == 64 and URL not in key and key == cache_key(URL) != cache_key(URL + "x")


# --- domain policy (draft §8.9) ---------------------------------------------------------------


def test_without_lists_every_host_is_allowed_and_none_trusted() -> None:
    assert DomainPolicy().decide("anything.example") == "allowed"


def test_exact_and_wildcard_patterns_match_as_documented() -> None:
    policy = DomainPolicy(allow=("app.example.com", "*.partner.example"))
    assert policy.decide("app.example.com") == "allowed"
    assert policy.decide("APP.example.com.") == "allowed"
    assert policy.decide("x.app.example.com") == "denied"
    assert policy.decide("a.partner.example") == "allowed"
    assert policy.decide("a.b.partner.example") == "allowed"
    assert policy.decide("partner.example") == "denied"
    assert policy.decide("evilpartner.example") == "denied"


def test_deny_wins_over_allow_and_trusted_and_trusted_hosts_are_allowed() -> None:
    policy = DomainPolicy(allow=("*.example.com",), deny=("bad.example.com",), trusted=("claude.ai", "bad.example.com"))
    assert policy.decide("bad.example.com") == "denied"
    assert policy.decide("claude.ai") == "trusted"
    assert policy.decide("good.example.com") == "allowed"
    assert policy.decide("other.example") == "denied"


@pytest.mark.parametrize("pattern", ["*", "*.", "*.com", "a.*.example", "example.com/path", "host:443", ""])
def test_malformed_domain_patterns_are_refused_at_construction(pattern: str) -> None:
    with pytest.raises(ValueError):
        DomainPolicy(deny=(pattern,))
