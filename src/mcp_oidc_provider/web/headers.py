"""Response headers every page or error of ours carries."""

from __future__ import annotations

#: RFC 6749 §5.1 / RFC 9700 §4.12: nothing we answer at the authorization endpoints is cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

#: Browser-facing pages: framed by nobody (RFC 6749 §10.13 clickjacking), no scripts, no referrer.
BASE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"

SECURITY_HEADERS = {
    "Content-Security-Policy": f"{BASE_CSP}; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
