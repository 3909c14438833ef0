"""Our signing keys and the JWKS we publish (RFC 7517, RFC 9068 §4).

Where keys come from (configuration or the store) is :mod:`..store.signing_keys`'s job;
``/jwks`` serves public halves only.
"""

from __future__ import annotations

import base64
import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from ..core.errors import ConfigurationError

Alg = Literal["RS256", "ES256"]
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def generate_jwks(alg: Alg = "RS256") -> dict[str, Any]:
    """A new private JWKS with one signing key."""
    params: Any = {"alg": alg, "use": "sig"}
    key = (
        RSAKey.generate_key(2048, parameters=params, auto_kid=True)
        if alg == "RS256"
        else ECKey.generate_key("P-256", parameters=params, auto_kid=True)
    )
    return {"keys": [key.as_dict(private=True)]}


class InvalidJWT(Exception):
    """A JWT that is malformed, unsigned, signed by a stranger or by the wrong algorithm."""


class SigningKeys:
    """Our private key set: the first key signs, every key verifies."""

    def __init__(self, private_jwks: Mapping[str, Any], secret: bytes) -> None:
        try:
            keyset = KeySet.import_key_set(dict(private_jwks))  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ConfigurationError("JWKS is not a valid private JSON Web Key Set") from exc
        if not keyset.keys:
            raise ConfigurationError("JWKS has no keys")
        self._by_kid: dict[str, RSAKey | ECKey] = {}
        for key in keyset.keys:
            if not isinstance(key, (RSAKey, ECKey)) or not key.is_private:
                raise ConfigurationError("JWKS must hold private RSA or EC signing keys")
            # RFC 7518 §3.1: RS256 is RSA, ES256 is EC on P-256; anything else fails at signing time.
            if not (
                (key.alg == "RS256" and isinstance(key, RSAKey))
                or (key.alg == "ES256" and isinstance(key, ECKey) and key.curve_name == "P-256")
            ):
                raise ConfigurationError("JWKS keys must be RSA with alg RS256 or EC P-256 with alg ES256")
            if not key.kid:
                raise ConfigurationError("JWKS keys must have a kid")
            if key.kid in self._by_kid:
                raise ConfigurationError("JWKS has two keys with the same kid")
            self._by_kid[key.kid] = key
        self._current = keyset.keys[0]
        self._verified = VerifiedTokenCache()
        self.secret = secret
        self._public = {"keys": [self._public_dict(k) for k in self._by_kid.values()]}

    @property
    def kids(self) -> tuple[str, ...]:
        """Key ids, the signing key first."""
        return tuple(self._by_kid)

    def adopt(self, other: SigningKeys) -> None:
        """Take ``other``'s keys in place (a rotation seen in the store, issue 10 item 5); the
        secret stays ours. Forgets verified tokens: one signed by a retired key must fail now."""
        self._by_kid = dict(other._by_kid)
        self._current = other._current
        self._public = other._public
        self._verified = VerifiedTokenCache()

    @staticmethod
    def _public_dict(key: RSAKey | ECKey) -> dict[str, Any]:
        public = key.as_dict(private=False)
        return {k: v for k, v in public.items() if k not in _PRIVATE_MEMBERS}

    @property
    def algorithms(self) -> list[str]:
        return sorted({str(k.alg) for k in self._by_kid.values()})

    def public_jwks(self) -> dict[str, Any]:
        return self._public

    def sign(self, claims: Mapping[str, Any], typ: str) -> str:
        key = self._current
        header = {"alg": key.alg, "kid": key.kid, "typ": typ}
        return jwt.encode(header, dict(claims), key)

    def verify(self, token: str, typ: str) -> dict[str, Any]:
        """Signature, algorithm and ``typ`` of one of our JWTs; claims are the caller's to check.

        RFC 8725 §3.1: the algorithm is the key's own, never the header's choice, so
        ``alg: none`` and an HMAC signed with our public key are refused. A token whose
        signature was already verified is served from a small cache: same bytes, same claims.
        """
        claims = self._verified.get(token)
        if claims is None:
            claims = verify_with_keys(token, typ, self._by_kid)
            self._verified.put(token, claims)
        return dict(claims)


class VerifiedTokenCache:
    """Claims of JWTs whose signature checked out, most recently used first, bounded.

    Only the signature verdict is cached: expiry, audience and revocation are the caller's
    (:mod:`...bearer` keeps its own cache of checked tokens in front of this one). A verifier
    that stops trusting a key calls :meth:`clear`.
    """

    def __init__(self, size: int = 2048) -> None:
        self._size = size
        self._entries: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def get(self, token: str) -> dict[str, Any] | None:
        claims = self._entries.get(token)
        if claims is not None:
            self._entries.move_to_end(token)
        return claims

    def put(self, token: str, claims: dict[str, Any]) -> None:
        self._entries[token] = claims
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


def public_keys_by_kid(jwks: Mapping[str, Any]) -> dict[str, RSAKey | ECKey]:
    """Verification keys from a public JWKS: RSA and EC signing keys with a kid and an alg."""
    found: dict[str, RSAKey | ECKey] = {}
    try:
        keyset = KeySet.import_key_set(dict(jwks))  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError):
        return found
    for key in keyset.keys:
        if isinstance(key, (RSAKey, ECKey)) and key.kid and key.alg in ("RS256", "ES256"):
            found[key.kid] = key
    return found


def key_id(token: str) -> str | None:
    try:
        kid = _peek_header(token).get("kid")
    except InvalidJWT:
        return None
    return kid if isinstance(kid, str) else None


def verify_with_keys(token: str, typ: str, keys: Mapping[str, RSAKey | ECKey]) -> dict[str, Any]:
    try:
        header = _peek_header(token)
        kid = header.get("kid")
        key = keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidJWT("unknown key")
        # RFC 9068 §4: resource servers MUST check typ is at+jwt (or application/at+jwt).
        if str(header.get("typ", "")).lower() not in (typ, f"application/{typ}"):
            raise InvalidJWT("wrong token type")
        decoded = jwt.decode(token, key, algorithms=[str(key.alg)])
    except InvalidJWT:
        raise
    except (JoseError, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise InvalidJWT("invalid token") from exc
    return dict(decoded.claims)


def _peek_header(token: str) -> dict[str, Any]:
    if token.count(".") != 2 or len(token) > 16384:
        raise InvalidJWT("not a JWS compact serialization")
    encoded = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidJWT("bad header") from exc
    if not isinstance(header, dict):
        raise InvalidJWT("bad header")
    return header


def parse_jwks_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError("JWKS is not valid JSON") from exc
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise ConfigurationError('JWKS must be a JSON object with a "keys" array')
    return value
