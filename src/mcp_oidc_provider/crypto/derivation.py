"""Every value derived from the server's secret seed, each under its own label.

One seed (``SECRET_KEY``, or a random one kept in the store) keys all of them; a label per use
keeps the derived values independent (NIST SP 800-108 style domain separation), so a value
minted for one purpose is never accepted for another.

===========================  =====================================================
Label                        Derived value
===========================  =====================================================
``client-secret``            a confidential client's secret, never stored
``browser-binding``          the digest of a login's browser binding, as stored
``consent-csrf``             the consent form's anti-CSRF token
``consent-remembered``       the MAC of a remember cookie (approval id, client, browser)
``browser-binding-cookie``   the MAC half of the browser-binding cookie (``id.mac``)
``consent-approval-key``     the store key of a remembered approval, from its id
``consent-approval``         the MAC inside a remembered approval record
``login-approval``           the MAC of a login's approval marker, required at the callback
``mcp-oidc-provider at-rest`` the Fernet key sealing grants (HKDF, RFC 5869)
===========================  =====================================================
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

Label = Literal[
    "client-secret",
    "browser-binding",
    "consent-csrf",
    "consent-remembered",
    # issue 8 §2: consent is a record, the browser binding a value the server minted
    "browser-binding-cookie",
    "consent-approval-key",
    "consent-approval",
    "login-approval",
]

SEALING_INFO = b"mcp-oidc-provider at-rest"


def mac_hex(seed: bytes, label: Label, *parts: str) -> str:
    """HMAC-SHA256 over the label and the parts, NUL-separated; hex."""
    message = "\x00".join((label, *parts)).encode()
    return hmac.new(seed, message, hashlib.sha256).hexdigest()


def mac_b64(seed: bytes, label: Label, *parts: str) -> str:
    """HMAC-SHA256 over the label and the parts, NUL-separated; unpadded base64url."""
    message = "\x00".join((label, *parts)).encode()
    return base64.urlsafe_b64encode(hmac.new(seed, message, hashlib.sha256).digest()).decode().rstrip("=")


def matches(presented: str, expected: str) -> bool:
    """Constant-time comparison of two derived values."""
    return hmac.compare_digest(presented.encode(), expected.encode())


def sealing_key(seed: bytes) -> bytes:
    """The Fernet key for grants at rest when no ``ENCRYPTION_KEYS`` are configured."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SEALING_INFO).derive(seed)
    return base64.urlsafe_b64encode(key)
