"""Audit events with stable names.

Each event is one log record on the ``mcp_oidc_provider.audit`` logger whose message is the
event name and whose ``extra`` carries only identifiers that are not secrets: client ids,
grant ids, the upstream ``sub`` and error codes. Never a token, code, secret, nonce, state or
e-mail address.
"""

from __future__ import annotations

import logging
from typing import Literal

logger = logging.getLogger("mcp_oidc_provider.audit")

Event = Literal[
    "client.registered",
    "login.started",
    "login.completed",
    "upstream.login_failed",
    "upstream.unreachable",
    "login.unknown_state",
    "login.other_browser",
    "consent.approved",
    "consent.denied",
    "consent.csrf_refused",
    "rate_limit.exceeded",
    "code.issued",
    "code.replayed",
    "token.issued",
    "token.refreshed",
    "refresh_token.reuse_detected",
    "refresh_token.concurrent_reuse",
    "grant.revoked",
    "resource.refused",
    "cimd.refused",
    # issue 8 §2
    "login.unapproved",
    # issue 10
    "introspection.refused",
    # issue 8 §1, §3 / issue 11 item 3
    "upstream.session_ended",
    "upstream.recheck_failed",
    "refresh.rate_limited",
    "grant.write_undone",
    # issue 10 item 5: admin
    "client.deleted",
    "key.added",
    "key.promoted",
    "key.retired",
    # issue 8 §4, §5
    "request.body_timeout",
    "request.refused",
]

SAFE_FIELDS = frozenset({"client_id", "grant_id", "subject", "error", "reason", "resource", "kid"})


def emit(event: Event, level: int = logging.INFO, **fields: str | None) -> None:
    unsafe = set(fields) - SAFE_FIELDS
    if unsafe:
        raise ValueError(f"audit field(s) {sorted(unsafe)} are not allowed")
    logger.log(level, event, extra={"event": event, **{f"audit_{k}": v for k, v in fields.items()}})
