"""Values derived from the secret seed stay independent per label (crypto/derivation.py), and
sealed records open only intact and under a known key (crypto/sealing.py)."""

from __future__ import annotations

import base64
import itertools
from typing import get_args

import pytest
from cryptography.fernet import Fernet

from mcp_oidc_provider.core.errors import ConfigurationError
from mcp_oidc_provider.crypto.derivation import Label, mac_b64, mac_hex, matches, sealing_key
from mcp_oidc_provider.crypto.minting import derive_client_secret
from mcp_oidc_provider.crypto.sealing import Sealer, SealError, new_encryption_key

pytestmark = pytest.mark.unit

SEED = b"\x01" * 32
LABELS: tuple[Label, ...] = get_args(Label)


def test_every_label_derives_a_different_value_from_the_same_seed_and_input() -> None:
    hex_values = {mac_hex(SEED, label, "client-1", "42") for label in LABELS}
    b64_values = {mac_b64(SEED, label, "client-1", "42") for label in LABELS}
    assert len(hex_values) == len(LABELS) >= 4
    assert len(b64_values) == len(LABELS)


def test_a_client_secret_is_not_accepted_as_any_other_derived_value() -> None:
    # A confidential client knows its secret; it must not double as a CSRF token or a consent MAC.
    secret = derive_client_secret(SEED, "client-1", 42)
    assert secret == mac_b64(SEED, "client-secret", "client-1", "42")
    for label in LABELS:
        if label != "client-secret":
            assert not matches(secret, mac_b64(SEED, label, "client-1", "42"))


def test_the_sealing_key_is_independent_of_every_mac() -> None:
    key = sealing_key(SEED)
    assert len(base64.urlsafe_b64decode(key)) == 32
    raw = base64.urlsafe_b64decode(key).hex()
    assert all(raw != mac_hex(SEED, label) for label in LABELS)


def test_parts_are_separated_so_moving_a_boundary_changes_the_value() -> None:
    # ("ab", "c") and ("a", "bc") must not collide: parts are NUL-separated.
    assert mac_hex(SEED, "consent-csrf", "ab", "c") != mac_hex(SEED, "consent-csrf", "a", "bc")
    assert mac_hex(SEED, "consent-csrf", "abc") != mac_hex(SEED, "consent-csrf", "ab", "c")
    assert mac_hex(SEED, "consent-csrf") != mac_hex(SEED, "consent-csrf", "")


def test_derived_values_are_deterministic_per_seed_and_differ_across_seeds() -> None:
    assert mac_hex(SEED, "browser-binding", "b") == mac_hex(SEED, "browser-binding", "b")
    assert mac_hex(SEED, "browser-binding", "b") != mac_hex(b"\x02" * 32, "browser-binding", "b")
    assert sealing_key(SEED) == sealing_key(SEED) != sealing_key(b"\x02" * 32)


def test_base64_values_are_unpadded_url_safe() -> None:
    for label, parts in itertools.product(LABELS, [(), ("x",), ("\u00e9", "\x00")]):
        value = mac_b64(SEED, label, *parts)
        assert len(value) == 43
        assert set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_matches_is_exact() -> None:
    value = mac_hex(SEED, "consent-remembered", "c")
    assert matches(value, value)
    assert not matches(value, value.upper())
    assert not matches(value[:-1], value)
    assert not matches("", value)


# --- sealing ------------------------------------------------------------------------------------


def test_a_sealed_record_opens_to_the_same_bytes_and_hides_them() -> None:
    sealer = Sealer.derived(SEED)
    plaintext = b'{"email": "alice@example.com", "refresh_token": "rt-secret"}'
    sealed = sealer.seal(plaintext)
    assert b"alice" not in sealed.encode() and "rt-secret" not in sealed
    assert sealer.open(sealed) == plaintext
    assert sealer.seal(plaintext) != sealed  # a fresh IV every time


@pytest.mark.parametrize("position", [0, 10, 30, 60, -5, -1])
def test_a_sealed_record_altered_anywhere_does_not_open(position: int) -> None:
    sealer = Sealer.derived(SEED)
    raw = bytearray(base64.urlsafe_b64decode(sealer.seal(b"claims")))
    raw[position] ^= 0x01
    with pytest.raises(SealError):
        sealer.open(base64.urlsafe_b64encode(bytes(raw)).decode())


@pytest.mark.parametrize("garbage", ["", "not-fernet", "gAAAAA", "\u00e9\u00e9"])
def test_garbage_does_not_open(garbage: str) -> None:
    with pytest.raises(SealError):
        Sealer.derived(SEED).open(garbage)


def test_a_record_sealed_under_another_seed_does_not_open() -> None:
    with pytest.raises(SealError):
        Sealer.derived(SEED).open(Sealer.derived(b"\x02" * 32).seal(b"claims"))


def test_keys_rotate_in_first_and_old_records_still_open() -> None:
    old, new = new_encryption_key(), new_encryption_key()
    sealed_before = Sealer.from_text(old).seal(b"before")
    rotated = Sealer.from_text(f" {new} , {old} ,")
    assert rotated.open(sealed_before) == b"before"
    sealed_after = rotated.seal(b"after")
    assert Sealer.from_text(new).open(sealed_after) == b"after"
    with pytest.raises(SealError):
        Sealer.from_text(old).open(sealed_after)


@pytest.mark.parametrize("text", ["", " , ", "too-short", Fernet.generate_key().decode()[:-2]])
def test_unusable_encryption_keys_are_a_configuration_error(text: str) -> None:
    with pytest.raises(ConfigurationError):
        Sealer.from_text(text)
