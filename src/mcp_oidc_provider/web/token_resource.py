"""RFC 8707 ``resource`` at ``/token``, which the SDK ignores.

A resource we do not serve, or several, is ``400 invalid_target`` (RFC 8707 §2) before the
SDK's handler runs; a served one is handed to the token flows
(:data:`..flows.grants.requested_resource`), which require it to be the grant's.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Send

from ..core import audit
from ..flows.grants import requested_resource
from .asgi import TokenFormCheck
from .errors import send_error


def is_served(resource: str, served: tuple[str, ...]) -> bool:
    return any(resource.rstrip("/") == r.rstrip("/") for r in served)


class TokenResourceMiddleware(TokenFormCheck):
    def __init__(self, app: ASGIApp, resource_urls: tuple[str, ...]) -> None:
        super().__init__(app)
        self.resource_urls = resource_urls

    async def refused(self, fields: list[tuple[str, str]], send: Send) -> bool:
        resources = [v for k, v in fields if k == "resource"]
        if len(resources) > 1 or (resources and not is_served(resources[0], self.resource_urls)):
            audit.emit("resource.refused", reason="/token")
            await send_error(send, 400, "invalid_target", "The resource is not served here")
            return True
        if resources:
            requested_resource.set(resources[0])
        return False
