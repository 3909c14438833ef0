"""The consent page's CSP sources and the redirect-URI user-information rule, without a server."""

from __future__ import annotations

import pytest

from mcp_oidc_provider.core.redirect_policy import RedirectUriRefused, ensure_redirect_uri_allowed, has_user_info
from mcp_oidc_provider.web.consent_page import csp_source, form_action

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "source"),
    [
        ("http://127.0.0.1:5555/callback?x=1", "http://127.0.0.1:5555"),
        ("https://IdP.Example/authorize", "https://idp.example"),
        ("http://[::1]:8080/cb", "http://[::1]:8080"),
        ("cursor://anysphere.cursor-retrieval/oauth/callback", "cursor:"),
    ],
)
def test_a_form_target_becomes_its_origin_or_its_scheme(url: str, source: str) -> None:
    assert csp_source(url) == source


@pytest.mark.parametrize(
    "url",
    [
        "https://a.example;script-src *",
        "https://a.example 'unsafe-inline'/x",
        "java script://x",
        "https://a.example:99999/x",
        "https:///nohost",
    ],
)
def test_a_target_that_could_inject_a_csp_directive_is_left_out(url: str) -> None:
    assert csp_source(url) is None
    assert form_action([url]) == "form-action 'self'"


def test_user_information_is_refused_in_http_loopback_redirect_uris() -> None:
    assert has_user_info("http://www.bank.example:443@127.0.0.1/cb")
    assert not has_user_info("http://127.0.0.1:443/cb")
    with pytest.raises(RedirectUriRefused):
        ensure_redirect_uri_allowed("http://www.bank.example:443@127.0.0.1/cb", ())
    ensure_redirect_uri_allowed("http://127.0.0.1:8080/cb", ())
