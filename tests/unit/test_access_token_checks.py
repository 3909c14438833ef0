"""Our access tokens as a resource server checks them: the JOSE layer (crypto/keys.py: typ, alg,
kid, RFC 8725 §3.1, RFC 9068 §4) and the claims (bearer.check_access_token_claims)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from mcp_oidc_provider.bearer import check_access_token_claims
from mcp_oidc_provider.core.clock import CLOCK_SKEW_SECONDS, FrozenClock
from mcp_oidc_provider.core.errors import ConfigurationError
from mcp_oidc_provider.crypto.keys import (
    InvalidJWT,
    SigningKeys,
    generate_jwks,
    key_id,
    public_keys_by_kid,
    verify_with_keys,
)
from mcp_oidc_provider.crypto.minting import ACCESS_TOKEN_TYP, mint_access_token

pytestmark = pytest.mark.unit

ISSUER = "https://auth.example"
MCP = "https://mcp.example/mcp"
OTHER_MCP = "https://other.example/mcp"
NOW = 1_800_000_000
SEED = b"s" * 32


@pytest.fixture(scope="module")
def rsa_jwks() -> dict[str, Any]:
    return generate_jwks("RS256")


@pytest.fixture(scope="module")
def keys(rsa_jwks: dict[str, Any]) -> SigningKeys:
    return SigningKeys(rsa_jwks, SEED)


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def token_claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user-42",
        "aud": MCP,
        "client_id": "client-1",
        "scope": "read",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 3600,
        "jti": "j1",
        "gid": "grant-1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def accepted(claims: dict[str, Any], now: float = NOW, audiences: tuple[str, ...] = (MCP, OTHER_MCP)) -> bool:
    return check_access_token_claims(claims, ISSUER, audiences, now)


# --- claims (RFC 9068 §4) -------------------------------------------------------------------


def test_a_fresh_token_for_a_served_audience_is_accepted() -> None:
    assert accepted(token_claims())
    assert accepted(token_claims(aud=OTHER_MCP))


def test_the_issuer_matches_with_or_without_a_trailing_slash() -> None:
    # mcp 1.x publishes "http://host:port/" where 2.x keeps the configured string.
    assert accepted(token_claims(iss=ISSUER + "/"))
    assert check_access_token_claims(token_claims(), ISSUER + "/", (MCP,), NOW)


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "https://evil.example"},
        {"iss": ISSUER + ".evil.example"},
        {"iss": None},
        {"iss": 7},
        {"aud": "https://elsewhere.example/mcp"},  # RFC 8707 §2: a token for another resource
        {"aud": [MCP]},  # we mint a single audience string
        {"aud": None},
        {"exp": NOW},  # exp is the first instant the token is invalid (RFC 7519 §4.1.4)
        {"exp": NOW - 1},
        {"exp": None},
        {"exp": float(NOW + 3600)},
        {"exp": str(NOW + 3600)},
        {"nbf": NOW + CLOCK_SKEW_SECONDS + 1},
        {"nbf": None, "iat": NOW + CLOCK_SKEW_SECONDS + 1},  # without nbf, iat stands in
        {"sub": None},
        {"sub": 42},
        {"client_id": None},
        {"gid": None},  # no grant, no revocation: refused
        {"gid": 5},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_a_token_failing_a_claim_check_is_refused(overrides: dict[str, Any]) -> None:
    assert not accepted(token_claims(**overrides))


def test_not_before_tolerates_the_clock_skew_between_replicas() -> None:
    assert accepted(token_claims(nbf=NOW + CLOCK_SKEW_SECONDS))
    assert accepted(token_claims(nbf=None, iat=NOW + CLOCK_SKEW_SECONDS))
    assert accepted(token_claims(nbf=None, iat=None))


def test_a_token_expires_exactly_at_exp_as_the_clock_moves() -> None:
    clock = FrozenClock(NOW)
    claims = token_claims(exp=NOW + 60)
    assert accepted(claims, clock.now())
    clock.advance(59.5)
    assert accepted(claims, clock.now())
    clock.advance(0.5)
    assert not accepted(claims, clock.now())


def test_no_audience_served_means_no_token_is_accepted() -> None:
    assert not accepted(token_claims(), audiences=())


# --- JOSE layer (SigningKeys.verify) ------------------------------------------------------------


def test_our_own_access_token_verifies_and_keeps_its_claims(keys: SigningKeys) -> None:
    token, claims = mint_access_token(
        keys,
        issuer=ISSUER,
        subject="user-42",
        audience=MCP,
        client_id="client-1",
        scopes=["read", "write"],
        grant_id="grant-1",
        issued_at=NOW,
        lifetime=300,
    )
    verified = keys.verify(token, ACCESS_TOKEN_TYP)
    assert verified == claims
    assert accepted(verified)


def test_the_verified_claims_are_a_copy_the_caller_cannot_poison(keys: SigningKeys) -> None:
    token = keys.sign(token_claims(), ACCESS_TOKEN_TYP)
    keys.verify(token, ACCESS_TOKEN_TYP)["aud"] = "https://evil.example"
    assert keys.verify(token, ACCESS_TOKEN_TYP)["aud"] == MCP


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_the_at_jwt_type_is_accepted_in_its_registered_spellings(keys: SigningKeys, typ: str) -> None:
    # RFC 9068 §4 with RFC 8725 §3.11: typ is compared case-insensitively, with or without "application/".
    assert keys.verify(keys.sign(token_claims(), typ), ACCESS_TOKEN_TYP)["sub"] == "user-42"


@pytest.mark.parametrize("typ", ["JWT", "id_token+jwt", "at+jwt2", "application/jwt", ""])
def test_a_token_of_another_type_is_refused(keys: SigningKeys, typ: str) -> None:
    # RFC 9068 §4: an ID token or other JWT signed by the same key is not an access token.
    with pytest.raises(InvalidJWT):
        keys.verify(keys.sign(token_claims(), typ), ACCESS_TOKEN_TYP)


def test_a_token_without_typ_is_refused(keys: SigningKeys, rsa_jwks: dict[str, Any]) -> None:
    private = RSAKey.import_key(rsa_jwks["keys"][0])
    token = jwt.encode({"alg": "RS256", "kid": private.kid}, token_claims(), private)
    with pytest.raises(InvalidJWT, match="wrong token type"):
        keys.verify(token, ACCESS_TOKEN_TYP)


def test_an_unsigned_token_naming_our_key_is_refused(keys: SigningKeys, rsa_jwks: dict[str, Any]) -> None:
    kid = rsa_jwks["keys"][0]["kid"]
    unsigned = f"{b64({'alg': 'none', 'kid': kid, 'typ': 'at+jwt'})}.{b64(token_claims())}."
    with pytest.raises(InvalidJWT):
        keys.verify(unsigned, ACCESS_TOKEN_TYP)


def test_an_hmac_keyed_with_our_public_key_is_refused(keys: SigningKeys, rsa_jwks: dict[str, Any]) -> None:
    # RFC 8725 §3.1: the algorithm is the key's own; the public JWKS must not turn into an HMAC secret.
    public = RSAKey.import_key(rsa_jwks["keys"][0])
    header = {"alg": "HS256", "kid": public.kid, "typ": "at+jwt"}
    signing_input = f"{b64(header)}.{b64(token_claims())}"
    for secret in (public.as_pem(private=False), json.dumps(keys.public_jwks()["keys"][0]).encode()):
        forged = f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"
        with pytest.raises(InvalidJWT):
            keys.verify(forged, ACCESS_TOKEN_TYP)


def test_a_token_signed_by_a_stranger_with_our_kid_is_refused(keys: SigningKeys, rsa_jwks: dict[str, Any]) -> None:
    kid = rsa_jwks["keys"][0]["kid"]
    stranger = RSAKey.generate_key(2048, parameters={"alg": "RS256", "kid": kid}, private=True)
    token = jwt.encode({"alg": "RS256", "kid": kid, "typ": "at+jwt"}, token_claims(), stranger)
    with pytest.raises(InvalidJWT, match="invalid token"):
        keys.verify(token, ACCESS_TOKEN_TYP)


def test_a_token_naming_an_unknown_key_or_no_key_is_refused(keys: SigningKeys) -> None:
    stranger = ECKey.generate_key("P-256", parameters={"alg": "ES256", "kid": "who"}, private=True)
    for header in ({"alg": "ES256", "kid": "who", "typ": "at+jwt"}, {"alg": "ES256", "typ": "at+jwt"}):
        with pytest.raises(InvalidJWT, match="unknown key"):
            keys.verify(jwt.encode(header, token_claims(), stranger), ACCESS_TOKEN_TYP)


def test_the_header_cannot_choose_another_algorithm_for_our_key(keys: SigningKeys, rsa_jwks: dict[str, Any]) -> None:
    # Our own private key, signing RSA-PSS instead of its declared RS256: still refused.
    private = RSAKey.import_key({k: v for k, v in rsa_jwks["keys"][0].items() if k != "alg"})
    header = {"alg": "PS256", "kid": private.kid, "typ": "at+jwt"}
    token = jwt.encode(header, token_claims(), private, algorithms=["PS256"])
    with pytest.raises(InvalidJWT):
        keys.verify(token, ACCESS_TOKEN_TYP)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "!!!.e30.x",
        f"{b64(b'[1, 2]')}.e30.x",  # header is JSON but not an object
        f"{b64(b'{')}.e30.x",
        f"{b64({'alg': 'RS256', 'kid': 'x' * 20000})}.e30.x",  # over the size cap
    ],
)
def test_malformed_tokens_are_refused_without_crashing(keys: SigningKeys, garbage: str) -> None:
    with pytest.raises(InvalidJWT):
        keys.verify(garbage, ACCESS_TOKEN_TYP)
    assert key_id(garbage) is None


def test_after_rotation_the_new_key_signs_and_the_old_one_still_verifies(rsa_jwks: dict[str, Any]) -> None:
    old = SigningKeys(rsa_jwks, SEED)
    old_token = old.sign(token_claims(), ACCESS_TOKEN_TYP)
    new_key = generate_jwks("ES256")["keys"][0]
    rotated = SigningKeys({"keys": [new_key, *rsa_jwks["keys"]]}, SEED)
    new_token = rotated.sign(token_claims(), ACCESS_TOKEN_TYP)
    assert key_id(new_token) == new_key["kid"]
    assert rotated.verify(old_token, ACCESS_TOKEN_TYP)["sub"] == "user-42"
    assert rotated.algorithms == ["ES256", "RS256"]
    with pytest.raises(InvalidJWT):
        old.verify(new_token, ACCESS_TOKEN_TYP)


def test_the_published_jwks_holds_no_private_member(keys: SigningKeys) -> None:
    for jwk in keys.public_jwks()["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi", "oth", "k"} & set(jwk)


def test_a_resource_server_verifies_with_our_public_jwks_only(keys: SigningKeys) -> None:
    # The proxy-mode verifier: public keys fetched from /jwks.
    public = public_keys_by_kid(keys.public_jwks())
    token = keys.sign(token_claims(), ACCESS_TOKEN_TYP)
    assert verify_with_keys(token, ACCESS_TOKEN_TYP, public)["gid"] == "grant-1"
    assert (
        public_keys_by_kid({"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "h", "alg": "HS256"}]})
        == {}
    )
    assert public_keys_by_kid({"keys": "nope"}) == {}


@pytest.mark.parametrize(
    "jwks",
    [
        {"keys": []},
        {"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "h", "alg": "HS256"}]},
        "public-only",
        "duplicate-kid",
        "wrong-alg",
        {"nonsense": True},
    ],
)
def test_signing_keys_refuse_a_jwks_they_could_not_use_safely(jwks: Any, rsa_jwks: dict[str, Any]) -> None:
    key = dict(rsa_jwks["keys"][0])
    variants: dict[str, Any] = {
        "public-only": {"keys": [RSAKey.import_key(key).as_dict(private=False)]},
        "duplicate-kid": {"keys": [key, key]},
        "wrong-alg": {"keys": [{**key, "alg": "ES256"}]},
    }
    with pytest.raises(ConfigurationError):
        SigningKeys(variants.get(jwks, jwks) if isinstance(jwks, str) else jwks, SEED)
