"""Audit events as JSON lines (``audit_json``): one object per event, for log shippers.

Each line holds the event name, its level, an RFC 3339 UTC timestamp and the event's safe
fields (:data:`.audit.SAFE_FIELDS`) under their own names, and nothing else from the record:
no message arguments, no exception text.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import IO, Any

from .audit import SAFE_FIELDS
from .audit import logger as audit_logger


class AuditJsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": event if isinstance(event, str) else "unknown",
        }
        for name in sorted(SAFE_FIELDS):
            value = getattr(record, f"audit_{name}", None)
            if value is not None:
                line[name] = str(value)
        return json.dumps(line, separators=(",", ":"))


def use_json_audit_lines(stream: IO[str] | None = None) -> logging.Handler:
    """Write audit events as JSON lines to ``stream`` (stderr) instead of through the root logger.

    The audit logger stops propagating (no second, plain copy) and passes INFO and above.
    Calling it again replaces the previous JSON handler.
    """
    for handler in list(audit_logger.handlers):
        if isinstance(handler.formatter, AuditJsonFormatter):
            audit_logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(AuditJsonFormatter())
    audit_logger.addHandler(handler)
    audit_logger.setLevel(logging.INFO)
    audit_logger.propagate = False
    return handler
