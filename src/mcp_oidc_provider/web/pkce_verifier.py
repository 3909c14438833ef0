"""The PKCE ``code_verifier`` at ``/token`` must be what RFC 7636 §4.1 allows.

``code-verifier = 43*128unreserved`` with ``unreserved = ALPHA / DIGIT / "-" / "." / "_" /
"~"``. The SDK only compares its hash with the challenge, so a client that made its challenge
from a 1-character or non-ASCII verifier could redeem its code. Such a verifier, or more than
one ``code_verifier`` (RFC 6749 §3.2: no parameter twice), is ``400 invalid_grant``
(RFC 7636 §4.6) before the SDK's handler runs. The code is NOT consumed: nothing loads it, and
it expires after ``authorization_code_ttl``; an attacker gains nothing from it (a valid
verifier is still required to redeem it).
"""

from __future__ import annotations

import re

from starlette.types import Send

from ..core import audit
from .asgi import TokenFormCheck
from .errors import send_error

#: RFC 7636 §4.1; ``fullmatch`` on a str, so no trailing newline slips through ``$``.
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def verifier_ok(values: list[str]) -> bool:
    return len(values) <= 1 and all(VERIFIER.fullmatch(v) for v in values)


class PkceVerifierMiddleware(TokenFormCheck):
    async def refused(self, fields: list[tuple[str, str]], send: Send) -> bool:
        if verifier_ok([v for k, v in fields if k == "code_verifier"]):
            return False
        audit.emit("request.refused", reason="code_verifier")
        await send_error(send, 400, "invalid_grant", "code_verifier must be 43 to 128 characters of RFC 7636")
        return True
