"""Prometheus metrics on a port of their own (``metrics_port``; 0: off).

The counters are derived from the audit events (:mod:`..core.audit`): one logging handler on
the ``mcp_oidc_provider.audit`` logger maps each event to its counter, so every place that
emits an event is measured with no code of its own. Bearer checks that failed on an exception
(the store, usually) are counted from the ``mcp_oidc_provider.bearer`` logger; store latency and
errors per operation come from :class:`..store.instrumented.InstrumentedStore`.

Keep the port off the public proxy: it is for your Prometheus, not for the internet.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter, start_http_server

from ..core.audit import logger as audit_logger
from ..core.audit_json import use_json_audit_lines
from ..core.settings import ProviderSettings
from ..store import instrumented  # noqa: F401  (registers the store metrics with the same registry)

LOGINS_STARTED = Counter("mcp_oidc_logins_started_total", "Upstream logins started (after /authorize and consent)")
LOGINS_COMPLETED = Counter("mcp_oidc_logins_completed_total", "Upstream logins completed at our callback")
TOKENS_ISSUED = Counter("mcp_oidc_tokens_issued_total", "Access tokens issued at /token", ["grant_type"])
REFUSALS = Counter("mcp_oidc_refusals_total", "Requests refused, by reason (the audit event)", ["reason"])
REFRESH_REUSE = Counter(
    "mcp_oidc_refresh_reuse_detected_total", "Rotated-away refresh tokens presented again (grant revoked)"
)
AUDIT_EVENTS = Counter("mcp_oidc_audit_events_total", "Every audit event, by name", ["event"])
BEARER_FAILURES = Counter(
    "mcp_oidc_bearer_check_failures_total", "Bearer checks that failed on an exception (store outage, mostly)"
)

GRANT_TYPES = {"token.issued": "authorization_code", "token.refreshed": "refresh_token"}
#: Audit events that mean a request (or a login) was refused; their name is the reason label.
REFUSAL_EVENTS = frozenset(
    {
        "resource.refused",
        "consent.csrf_refused",
        "consent.denied",
        "rate_limit.exceeded",
        "login.other_browser",
        "login.unknown_state",
        "login.unapproved",
        "upstream.login_failed",
        "upstream.unreachable",
        "code.replayed",
        "refresh_token.reuse_detected",
        "refresh_token.concurrent_reuse",
        "cimd.refused",
        "request.body_timeout",
        "request.refused",
        "introspection.refused",
    }
)


class AuditMetricsHandler(logging.Handler):
    """Audit events to counters. Only the event name is read: never a field value."""

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", None)
        if not isinstance(event, str):
            return
        AUDIT_EVENTS.labels(event).inc()
        if event == "login.started":
            LOGINS_STARTED.inc()
        elif event == "login.completed":
            LOGINS_COMPLETED.inc()
        elif event in GRANT_TYPES:
            TOKENS_ISSUED.labels(GRANT_TYPES[event]).inc()
        if event in REFUSAL_EVENTS:
            REFUSALS.labels(event).inc()
        if event == "refresh_token.reuse_detected":
            REFRESH_REUSE.inc()


class BearerFailureHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            BEARER_FAILURES.inc()


def install_metrics_handlers() -> None:
    """Count audit events and bearer failures from now on (idempotent).

    The audit logger is set to pass INFO, the level of most events, whatever the root's level.
    """
    if not any(isinstance(h, AuditMetricsHandler) for h in audit_logger.handlers):
        audit_logger.addHandler(AuditMetricsHandler())
    if audit_logger.getEffectiveLevel() > logging.INFO:
        audit_logger.setLevel(logging.INFO)
    # Both verifiers (integrated and proxy mode) report failures through bearer.refuse_after_failure.
    bearer_logger = logging.getLogger("mcp_oidc_provider.bearer")
    if not any(isinstance(h, BearerFailureHandler) for h in bearer_logger.handlers):
        bearer_logger.addHandler(BearerFailureHandler())


def start_metrics_server(port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` (Prometheus text format) on ``host:port`` in a daemon thread and start
    counting. Returns the WSGI server (``.shutdown()`` stops it)."""
    install_metrics_handlers()
    server, _thread = start_http_server(port, addr=host)
    return server


def apply_operations_settings(settings: ProviderSettings, metrics_host: str = "127.0.0.1") -> Any:
    """What a runnable server does with ``audit_json`` and ``metrics_port``: JSON audit lines on
    stderr, and the metrics server. Returns the metrics server, or None when metrics are off."""
    if settings.audit_json:
        use_json_audit_lines()
    if settings.metrics_port:
        return start_metrics_server(settings.metrics_port, metrics_host)
    return None
