"""A refusal caused by a store outage is a 503, not a 401.

The SDK's bearer middleware knows two outcomes of a token check: a token (request goes on)
or none (401, ``invalid_token``); an exception becomes a 500 with a traceback. So when the
store cannot be reached, the verifiers refuse the token and report the outage
(:func:`..store.failures.report_store_outage`); this middleware, wrapped around the MCP app,
turns that request's 401 into ``503 temporarily_unavailable`` with ``Retry-After``, so clients
retry instead of starting a new login. Without it the answer is still a refusal (401).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store.failures import OutageFlag, current_outage
from .errors import send_error

RETRY_AFTER_SECONDS = 2


class StoreOutageMiddleware:
    """ASGI middleware: a refusal caused by a store outage is a 503, not a 401."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Only a bearer check reports an outage, and only a request with credentials has one:
        # the others go through untouched, no wrapped send (issue 12). ASGI header names are
        # lower case.
        if scope["type"] != "http" or not any(name == b"authorization" for name, _ in scope.get("headers", ())):
            await self.app(scope, receive, send)
            return
        outage = OutageFlag()
        reset = current_outage.set(outage)
        replaced = False

        async def send_or_replace(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return
            if message["type"] == "http.response.start" and outage.seen and message["status"] == 401:
                replaced = True
                await send_error(
                    send,
                    503,
                    "temporarily_unavailable",
                    "The token store is unreachable",
                    {"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
                return
            await send(message)

        try:
            await self.app(scope, receive, send_or_replace)
        finally:
            current_outage.reset(reset)
