"""How a preset shapes the requests to its IdP and the checks of its answers (issue 11).

Pure functions of :class:`~..core.settings.UpstreamSettings`, shared by every upstream
implementation: the scopes and authorization parameters sent, and Entra ID's multi-tenant
issuer.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ..core.presets import ENTRA_MULTI_TENANT, ENTRA_TENANT_PLACEHOLDER, PRESETS
from ..core.settings import UpstreamSettings


def request_scopes(settings: UpstreamSettings) -> tuple[str, ...]:
    """The configured scopes minus those the IdP refuses (Google and Clerk: ``offline_access``)."""
    unsupported = PRESETS[settings.preset].unsupported_scopes
    return tuple(s for s in settings.scopes if s not in unsupported)


def authorize_params(settings: UpstreamSettings) -> dict[str, str]:
    """The preset's extra authorization parameters, then Auth0's ``audience``, then the
    configured ``extra_authorize_params`` (which win)."""
    params = dict(PRESETS[settings.preset].authorize_params)
    if settings.audience is not None:
        params["audience"] = settings.audience
    params.update(settings.extra_authorize_params)
    if settings.preset == "entra":
        params.pop("resource", None)  # Entra v2.0 refuses `resource` next to scopes
    return params


def entra_tenant_segment(issuer: str) -> str | None:
    """``common``/``organizations`` when ``issuer`` is Entra's multi-tenant endpoint, else None."""
    path = [p for p in urlsplit(issuer).path.split("/") if p]
    return path[0] if path and path[0] in ENTRA_MULTI_TENANT else None


def entra_issuer_template(settings: UpstreamSettings) -> str | None:
    """The issuer Entra's multi-tenant discovery publishes: ours with ``{tenantid}`` as tenant."""
    if settings.preset != "entra":
        return None
    segment = entra_tenant_segment(settings.issuer)
    if segment is None:
        return None
    parts = urlsplit(settings.issuer)
    path = parts.path.replace(f"/{segment}", f"/{ENTRA_TENANT_PLACEHOLDER}", 1)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def accepted_issuer(settings: UpstreamSettings, published: str) -> bool:
    """OIDC Discovery §4.3: the published issuer equals the configured one; Entra's multi-tenant
    endpoint publishes its template instead, which is accepted and then checked per ID token."""
    if published.rstrip("/") == settings.issuer.rstrip("/"):
        return True
    template = entra_issuer_template(settings)
    return template is not None and published.rstrip("/") == template.rstrip("/")
