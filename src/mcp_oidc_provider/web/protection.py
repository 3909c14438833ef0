"""``provider.protect(app)``: the HTTP-edge middlewares in front of the SDK's app, in order.

=========================  ======================================================  ===================
Middleware                 What it does                                            Module
=========================  ======================================================  ===================
store outage               a refusal caused by a store outage is 503, not 401      :mod:`.outage`
rate limit                 per-IP budget at /register and /authorize (429)         :mod:`.rate_limit`
iss on redirects           RFC 9207 ``iss`` on the SDK's /authorize error redirects :mod:`.issuer_redirects`
body limit                 bounded bodies at the authorization endpoints (413)     :mod:`.body_limit`
register body              /register body must be a JSON object (RFC 7591)         :mod:`.register_body`
token resource             RFC 8707 ``resource`` at /token                          :mod:`.token_resource`
basic client id            the Basic header's client id in the /token form          :mod:`.basic_client_id`
metadata documents         RFC 8414 / RFC 9728 documents as we publish them        :mod:`.metadata_documents`
=========================  ======================================================  ===================
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp

from ..core.settings import ProviderSettings
from .basic_client_id import BasicClientIdMiddleware
from .body_limit import BodyLimitMiddleware
from .issuer_redirects import IssuerOnRedirectsMiddleware
from .metadata_documents import MetadataDocumentsMiddleware
from .outage import StoreOutageMiddleware
from .rate_limit import RateLimitMiddleware
from .register_body import RegisterBodyMiddleware
from .token_resource import TokenResourceMiddleware


def protect(app: ASGIApp, settings: ProviderSettings, issuer: str, metadata: dict[str, Any] | None = None) -> ASGIApp:
    """Wrap the SDK's app; the first middleware listed sees the request first."""
    app = MetadataDocumentsMiddleware(
        app, issuer=issuer, authorization_server_metadata=metadata, registration_enabled=settings.dynamic_registration
    )
    app = BasicClientIdMiddleware(app)
    app = TokenResourceMiddleware(app, settings.resource_urls)
    app = RegisterBodyMiddleware(app)
    app = BodyLimitMiddleware(app, settings.max_body_bytes)
    app = IssuerOnRedirectsMiddleware(app, issuer)
    if settings.rate_limit_per_minute:
        app = RateLimitMiddleware(app, settings.rate_limit_per_minute, settings.trust_forwarded_for)
    return StoreOutageMiddleware(app)
