"""Validation of the upstream ID token (upstream/id_token.py, OIDC Core §3.1.3.7, RFC 8725 §3.1),
with keys made by joserfc and time from a FrozenClock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from mcp_oidc_provider.core.clock import CLOCK_SKEW_SECONDS, FrozenClock
from mcp_oidc_provider.core.errors import UpstreamIdTokenInvalid
from mcp_oidc_provider.upstream.id_token import allowed_algorithms, validate_id_token

pytestmark = pytest.mark.unit

ISSUER = "https://idp.example"
CLIENT_ID = "our-client"
NONCE = "n-0S6_WzA2Mj"
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def idp_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"alg": "RS256", "kid": "idp-1", "use": "sig"}, private=True)


@pytest.fixture(scope="module")
def idp_keys(idp_key: RSAKey) -> KeySet:
    """The upstream JWKS as we fetch it: public halves only."""
    return KeySet.import_key_set({"keys": [idp_key.as_dict(private=False)]})


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": "user-42",
        "exp": NOW + 300,
        "iat": NOW,
        "nonce": NONCE,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: RSAKey | ECKey, body: dict[str, Any], alg: str = "RS256", kid: str = "idp-1") -> str:
    return jwt.encode({"alg": alg, "kid": kid}, body, key, algorithms=[alg])


def validate(
    token: str, keys: KeySet, *, clock: FrozenClock | None = None, algorithms: list[str] | None = None
) -> dict[str, Any]:
    return validate_id_token(
        token,
        keys=keys,
        algorithms=algorithms or ["RS256"],
        issuer=ISSUER,
        client_id=CLIENT_ID,
        nonce=NONCE,
        now=(clock or FrozenClock(NOW)).now,
    )


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def hmac_forgery(secret: bytes, header: dict[str, Any], body: dict[str, Any]) -> str:
    """The attacker's token: joserfc itself refuses a public key as an HMAC secret, so the MAC is
    computed with the standard library."""
    signing_input = f"{b64(header)}.{b64(body)}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def test_a_token_signed_by_the_idp_with_every_expected_claim_is_accepted(idp_key: RSAKey, idp_keys: KeySet) -> None:
    validated = validate(sign(idp_key, claims(email="a@example.com")), idp_keys)
    assert validated["sub"] == "user-42"
    assert validated["email"] == "a@example.com"


def test_an_unsigned_token_is_refused(idp_keys: KeySet) -> None:
    # RFC 8725 §3.1: "alg": "none" is never accepted, whatever the header says.
    unsigned = f"{b64({'alg': 'none', 'kid': 'idp-1'})}.{b64(claims())}."
    with pytest.raises(UpstreamIdTokenInvalid, match="could not be verified"):
        validate(unsigned, idp_keys)
    with pytest.raises(UpstreamIdTokenInvalid):
        validate(unsigned, idp_keys, algorithms=allowed_algorithms(("none", "RS256")))


def test_an_hmac_token_keyed_with_the_idps_public_key_is_refused(idp_key: RSAKey, idp_keys: KeySet) -> None:
    # RFC 8725 §2.1 algorithm confusion: the attacker knows the public key, so an HS256 MAC keyed
    # with it must not verify.
    forged = hmac_forgery(idp_key.as_pem(private=False), {"alg": "HS256", "kid": "idp-1"}, claims())
    with pytest.raises(UpstreamIdTokenInvalid):
        validate(forged, idp_keys)
    with pytest.raises(UpstreamIdTokenInvalid):
        validate(forged, idp_keys, algorithms=allowed_algorithms(("HS256", "RS256")))


def test_a_token_signed_by_another_key_is_refused(idp_keys: KeySet) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"alg": "RS256", "kid": "idp-1"}, private=True)
    with pytest.raises(UpstreamIdTokenInvalid, match="could not be verified"):
        validate(sign(stranger, claims()), idp_keys)


def test_a_token_whose_claims_were_altered_after_signing_is_refused(idp_key: RSAKey, idp_keys: KeySet) -> None:
    header, _, signature = sign(idp_key, claims()).split(".")
    tampered_payload = b64(claims(sub="admin"))
    with pytest.raises(UpstreamIdTokenInvalid):
        validate(f"{header}.{tampered_payload}.{signature}", idp_keys)


def test_an_algorithm_the_idp_does_not_advertise_is_refused() -> None:
    ec = ECKey.generate_key("P-256", parameters={"alg": "ES256", "kid": "ec-1"}, private=True)
    keys = KeySet.import_key_set({"keys": [ec.as_dict(private=False)]})
    token = sign(ec, claims(), alg="ES256", kid="ec-1")
    assert validate(token, keys, algorithms=["ES256"])["sub"] == "user-42"
    with pytest.raises(UpstreamIdTokenInvalid):
        validate(token, keys, algorithms=["RS256"])


@pytest.mark.parametrize("garbage", ["", "a.b", "a.b.c", "....", "x" * 5000, "eyJhbGciOiJSUzI1NiJ9.e30."])
def test_malformed_tokens_are_refused_as_unverifiable(garbage: str, idp_keys: KeySet) -> None:
    with pytest.raises(UpstreamIdTokenInvalid, match="could not be verified"):
        validate(garbage, idp_keys)


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "https://evil.example"},  # step 2
        {"iss": ISSUER + "/"},  # the issuer is compared exactly
        {"iss": None},
        {"aud": "someone-else"},  # step 3
        {"aud": ["someone-else", "another"]},
        {"aud": None},
        {"exp": NOW - CLOCK_SKEW_SECONDS - 1},  # step 9, beyond the skew
        {"exp": None},
        {"iat": None},  # step 10
        {"iat": NOW + CLOCK_SKEW_SECONDS + 60},  # issued in the future
        {"nbf": NOW + CLOCK_SKEW_SECONDS + 60},
        {"nonce": "another-nonce"},  # step 11: replay of another login's token
        {"nonce": None},
        {"sub": None},  # OIDC Core §2
        {"exp": "tomorrow"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_a_token_failing_a_claim_check_is_refused(overrides: dict[str, Any], idp_key: RSAKey, idp_keys: KeySet) -> None:
    with pytest.raises(UpstreamIdTokenInvalid):
        validate(sign(idp_key, claims(**overrides)), idp_keys)


@pytest.mark.parametrize("sub", ["", 42, ["user"]])
def test_a_subject_that_is_not_a_non_empty_string_is_refused(sub: object, idp_key: RSAKey, idp_keys: KeySet) -> None:
    with pytest.raises(UpstreamIdTokenInvalid):
        validate(sign(idp_key, claims(sub=sub)), idp_keys)


def test_several_audiences_need_azp_naming_us(idp_key: RSAKey, idp_keys: KeySet) -> None:
    # OIDC Core §3.1.3.7 steps 4-5.
    audiences = [CLIENT_ID, "other-rp"]
    with pytest.raises(UpstreamIdTokenInvalid, match="authorized party"):
        validate(sign(idp_key, claims(aud=audiences)), idp_keys)
    with pytest.raises(UpstreamIdTokenInvalid, match="authorized party"):
        validate(sign(idp_key, claims(aud=audiences, azp="other-rp")), idp_keys)
    assert validate(sign(idp_key, claims(aud=audiences, azp=CLIENT_ID)), idp_keys)["azp"] == CLIENT_ID
    assert validate(sign(idp_key, claims(aud=[CLIENT_ID])), idp_keys)["sub"] == "user-42"


def test_expiry_allows_the_clock_skew_and_no_more(idp_key: RSAKey, idp_keys: KeySet) -> None:
    token = sign(idp_key, claims(exp=NOW + 10))
    clock = FrozenClock(NOW)
    assert validate(token, idp_keys, clock=clock)
    clock.advance(10 + CLOCK_SKEW_SECONDS - 1)
    assert validate(token, idp_keys, clock=clock)
    clock.advance(1)
    with pytest.raises(UpstreamIdTokenInvalid, match="failed validation"):
        validate(token, idp_keys, clock=clock)


def test_an_idp_clock_slightly_ahead_of_ours_is_tolerated(idp_key: RSAKey, idp_keys: KeySet) -> None:
    ahead = NOW + CLOCK_SKEW_SECONDS - 5
    assert validate(sign(idp_key, claims(iat=ahead, nbf=ahead)), idp_keys)


def test_only_asymmetric_advertised_algorithms_are_used_and_rs256_is_the_default() -> None:
    assert allowed_algorithms(("RS256", "ES256", "HS256", "none")) == ["RS256", "ES256"]
    assert allowed_algorithms(("HS256", "none")) == ["RS256"]
    assert allowed_algorithms(()) == ["RS256"]
    assert allowed_algorithms(("EdDSA", "PS256")) == ["EdDSA", "PS256"]


def test_refusals_never_echo_the_token(idp_key: RSAKey, idp_keys: KeySet) -> None:
    token = sign(idp_key, claims(nonce="wrong"))
    with pytest.raises(UpstreamIdTokenInvalid) as refused:
        validate(token, idp_keys)
    assert token not in refused.value.description
    assert "wrong" not in refused.value.description
