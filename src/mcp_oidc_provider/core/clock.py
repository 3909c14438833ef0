"""The one injectable clock.

Every expiry decision in the package reads time from a :class:`Clock`, so tests move time
instead of sleeping. Values are real epoch seconds because the SDK's handlers compare
``expires_at`` with :func:`time.time` themselves.
"""

from __future__ import annotations

import time
from typing import Protocol

#: Leeway for ``nbf``/``iat``/``exp`` between our replicas and the upstream IdP, whose clocks
#: differ slightly (RFC 7519 §4.1.4 "some small leeway").
CLOCK_SKEW_SECONDS = 60


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class FrozenClock:
    """A clock for tests: it stands still until moved."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
