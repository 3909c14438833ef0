"""What a resource server outside this package sees: our /jwks and a standard JWT library."""

from __future__ import annotations

import jwt  # PyJWT, a third-party library with no knowledge of this package
import pytest
from support.harness import Harness


async def test_a_third_party_resource_server_verifies_our_access_token_with_only_our_jwks(server: Harness) -> None:
    _, tokens = await server.login_and_redeem()
    jwks_client = jwt.PyJWKClient(server.base + "/jwks")
    key = await _to_thread(jwks_client.get_signing_key_from_jwt, tokens["access_token"])

    claims = jwt.decode(
        tokens["access_token"],
        key.key,
        algorithms=["RS256"],
        audience=server.mcp_url,
        issuer=server.provider.issuer,
        options={"require": ["exp", "iat", "sub", "aud", "iss", "jti"]},
    )

    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["typ"] == "at+jwt"  # RFC 9068 §2.1
    assert header["kid"] == key.key_id
    assert claims["sub"] == "alice"
    assert claims["scope"] == "mcp"
    assert claims["client_id"]
    assert claims["exp"] - claims["iat"] == tokens["expires_in"]
    # No personal data travels in the token.
    assert "email" not in claims and "name" not in claims


async def test_a_third_party_resource_server_refuses_our_token_for_another_audience(server: Harness) -> None:
    _, tokens = await server.login_and_redeem()
    key = await _to_thread(jwt.PyJWKClient(server.base + "/jwks").get_signing_key_from_jwt, tokens["access_token"])
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(tokens["access_token"], key.key, algorithms=["RS256"], audience="https://other.example/mcp")


async def test_jwks_serves_public_keys_only(server: Harness) -> None:
    jwks = (await server.http.get(server.base + "/jwks")).json()
    assert jwks["keys"]
    for key in jwks["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(key)
        assert key["use"] == "sig" and key["kid"]


async def _to_thread(fn, *args):  # type: ignore[no-untyped-def]
    import anyio

    return await anyio.to_thread.run_sync(fn, *args)
