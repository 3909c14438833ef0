"""The upstream for a configuration: GitHub's REST-API client or the OpenID Connect client.

Presets and what they change are listed in :mod:`..core.presets`; docs/IDPS.md says what to
create in each IdP's console.
"""

from __future__ import annotations

from ..core.clock import Clock
from ..core.settings import UpstreamSettings
from .client import UpstreamClient
from .github import GitHubUpstream
from .protocol import UpstreamProvider


def build_upstream(settings: UpstreamSettings, redirect_uri: str, clock: Clock) -> UpstreamProvider:
    if settings.preset == "github":
        return GitHubUpstream(settings, redirect_uri, clock)
    return UpstreamClient(settings, redirect_uri, clock)
