"""Which redirect URIs a client may register, and which loopback variants it may request later
(core/redirect_policy.py: RFC 7591 §2, RFC 8252 §7, OAuth 2.1 §2.3.1, SEP-837)."""

from __future__ import annotations

import pytest

from mcp_oidc_provider.core.redirect_policy import (
    DEFAULT_PRIVATE_USE_SCHEMES,
    RedirectUriRefused,
    ensure_redirect_uri_allowed,
    is_loopback_host,
    loopback_port_variant,
)

pytestmark = pytest.mark.unit

SCHEMES = DEFAULT_PRIVATE_USE_SCHEMES


def allowed(uri: str, *, hosts: tuple[str, ...] = (), application_type: str | None = None) -> bool:
    try:
        ensure_redirect_uri_allowed(uri, SCHEMES, hosts, application_type)
    except RedirectUriRefused:
        return False
    return True


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/callback",
        "https://app.example:8443/cb?x=1",
        "http://127.0.0.1:33418/callback",  # Python SDK clients
        "http://localhost:6274/oauth/callback",  # mcp-remote
        "http://[::1]:8080/cb",
        "http://127.0.0.2/cb",  # all of 127.0.0.0/8 is loopback
        "cursor://anysphere.cursor-retrieval/oauth/callback",
        "vscode://vscode.github-authentication/did-authenticate",
        "claude://oauth/callback",
        "VSCODE://x/cb",  # schemes are case-insensitive (RFC 3986 §3.1)
    ],
)
def test_usual_client_redirect_uris_are_accepted(uri: str) -> None:
    assert allowed(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb#frag",  # RFC 6749 §3.1.2: no fragment
        "https://app.example/cb#",  # an empty fragment is still a fragment
        "http://127.0.0.1:8080/cb#x",
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        "ftp://app.example/cb",
        "http://app.example/cb",  # RFC 8252 §8.3: plain http only on loopback
        "http://127.0.0.1.evil.example/cb",
        "http://localhost.evil.example/cb",
        "https:///no-host",
        "https://user:pass@app.example/cb",  # no userinfo
        "https://user@app.example/cb",
        "https://app.example/c b",
        "https://app.example/cb\t",
        "https://app.example\\@evil.example/cb",
        "http://[::1/cb",  # not a valid URI
        "",
        "cursorx://x/cb",  # allow-list matches the whole scheme, never a prefix
        "cursor-evil://x/cb",
        "curs://x/cb",
        "mailto:a@b.example",
    ],
)
def test_dangerous_or_malformed_redirect_uris_are_refused(uri: str) -> None:
    assert not allowed(uri)


def test_private_use_schemes_come_only_from_the_configured_list() -> None:
    assert not allowed_with_schemes("myapp://cb", ())
    assert allowed_with_schemes("myapp://cb", ("myapp",))
    assert allowed_with_schemes("MyApp://cb", ("myapp",))
    assert allowed_with_schemes("myapp://cb", ("MYAPP",))


def allowed_with_schemes(uri: str, schemes: tuple[str, ...]) -> bool:
    try:
        ensure_redirect_uri_allowed(uri, schemes)
    except RedirectUriRefused:
        return False
    return True


def test_a_host_allow_list_limits_https_hosts_but_not_loopback() -> None:
    hosts = ("App.Example",)
    assert allowed("https://app.example/cb", hosts=hosts)
    assert allowed("https://APP.EXAMPLE/cb", hosts=hosts)
    assert not allowed("https://other.example/cb", hosts=hosts)
    assert not allowed("https://app.example.evil.example/cb", hosts=hosts)
    assert allowed("https://127.0.0.1/cb", hosts=hosts)
    assert allowed("http://localhost:9/cb", hosts=hosts)
    assert allowed("cursor://x/cb", hosts=hosts)


def test_web_clients_get_https_on_non_loopback_hosts_only() -> None:
    # SEP-837: application_type "web" means a hosted client.
    assert allowed("https://app.example/cb", application_type="web")
    assert not allowed("https://127.0.0.1/cb", application_type="web")
    assert not allowed("https://localhost/cb", application_type="web")
    assert not allowed("http://127.0.0.1:8080/cb", application_type="web")
    assert not allowed("cursor://x/cb", application_type="web")


@pytest.mark.parametrize("application_type", ["native", None])
def test_native_clients_and_clients_without_a_type_get_loopback_private_use_and_https(
    application_type: str | None,
) -> None:
    # The mcp 2.x SDK defaults application_type to native, so hosted clients keep https.
    for uri in ("http://127.0.0.1:8080/cb", "https://localhost/cb", "cursor://x/cb", "https://app.example/cb"):
        assert allowed(uri, application_type=application_type), uri


def test_refusals_say_why_without_echoing_more_than_the_scheme() -> None:
    with pytest.raises(RedirectUriRefused, match="fragment"):
        ensure_redirect_uri_allowed("https://a.example/#x", SCHEMES)
    with pytest.raises(RedirectUriRefused, match="loopback"):
        ensure_redirect_uri_allowed("http://a.example/", SCHEMES)
    with pytest.raises(RedirectUriRefused, match="'javascript' is not allowed") as refused:
        ensure_redirect_uri_allowed("javascript:steal(document.cookie)", SCHEMES)
    assert "cookie" not in str(refused.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        (None, False),
        ("", False),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("localhost.example", False),
        ("::ffff:127.0.0.1", False),  # ipaddress does not count mapped addresses as loopback
    ],
)
def test_loopback_hosts_are_localhost_and_loopback_addresses(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("registered", "requested"),
    [
        ("http://127.0.0.1/callback", "http://127.0.0.1:51234/callback"),
        ("http://127.0.0.1:8080/callback", "http://127.0.0.1:51234/callback"),
        ("http://127.0.0.1:8080/callback", "http://127.0.0.1/callback"),
        ("http://localhost:1/cb?x=1", "http://localhost:65535/cb?x=1"),
        ("http://[::1]:8080/cb", "http://[::1]:9/cb"),
    ],
)
def test_a_loopback_redirect_uri_may_change_its_port_at_request_time(registered: str, requested: str) -> None:
    # RFC 8252 §7.3: the client picks an ephemeral port per login.
    assert loopback_port_variant(registered, requested)


@pytest.mark.parametrize(
    ("registered", "requested"),
    [
        ("https://app.example:443/cb", "https://app.example:8443/cb"),  # never for a non-loopback URI
        ("https://127.0.0.1:8080/cb", "https://127.0.0.1:9090/cb"),  # only http
        ("http://app.example:80/cb", "http://app.example:81/cb"),
        ("http://127.0.0.1:8080/cb", "http://localhost:8080/cb"),  # host must match
        ("http://localhost:8080/cb", "http://127.0.0.1:8080/cb"),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:8080/other"),  # path must match
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:8080/cb/"),
        ("http://127.0.0.1:8080/cb?a=1", "http://127.0.0.1:8080/cb?a=2"),  # query must match
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:8080/cb?a=1"),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:9/cb#frag"),  # no fragment
        ("http://127.0.0.1:8080/cb", "http://user@127.0.0.1:9/cb"),  # no userinfo
        ("http://127.0.0.1:8080/cb", "http://user:pw@127.0.0.1:9/cb"),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:0/cb"),  # port 0 is no port
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:99999/cb"),  # out of range
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:abc/cb"),
        ("http://127.0.0.1:8080/cb", "http://[::1/cb"),
        ("cursor://x/cb", "cursor://x:9/cb"),
    ],
)
def test_every_other_difference_from_the_registered_uri_is_refused(registered: str, requested: str) -> None:
    assert not loopback_port_variant(registered, requested)
