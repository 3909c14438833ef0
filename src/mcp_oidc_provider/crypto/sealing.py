"""Encryption at rest of what a store dump must not reveal: upstream IdP tokens and the
user's claims (e-mail, name...), sealed with Fernet (AES-128-CBC + HMAC-SHA256, from the
``cryptography`` package).

Keys come from ``ENCRYPTION_KEYS`` (comma-separated Fernet keys: the first encrypts, all
decrypt, so a key can be rotated in by putting it first and retired once old records have
expired or been rewritten). Without it the key is derived from the server's secret seed; that
seed lives in the store unless ``SECRET_KEY`` is set, so production sets one of the two.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from ..core.errors import ConfigurationError
from .derivation import sealing_key

logger = logging.getLogger("mcp_oidc_provider.sealing")


class SealError(Exception):
    """A sealed value could not be opened: wrong key, or tampered with."""


class Sealer:
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ConfigurationError("at least one encryption key is needed")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except ValueError as exc:
            raise ConfigurationError("ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64 bytes)") from exc

    @classmethod
    def from_text(cls, text: str) -> Sealer:
        return cls([k.strip().encode() for k in text.split(",") if k.strip()])

    @classmethod
    def derived(cls, seed: bytes) -> Sealer:
        return cls([sealing_key(seed)])

    def seal(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode()

    def open(self, sealed: str) -> bytes:
        try:
            return self._fernet.decrypt(sealed.encode())
        except InvalidToken as exc:
            raise SealError("sealed record could not be decrypted") from exc


def new_encryption_key() -> str:
    return Fernet.generate_key().decode()
