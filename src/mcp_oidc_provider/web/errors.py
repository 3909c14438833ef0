"""The one place an OAuth error is written to the wire.

RFC 6749 §5.2 (JSON body with ``error`` and ``error_description``), §4.1.2.1 (the description's
character set: printable ASCII without ``"`` and ``\\``), RFC 6750 §3 and RFC 7591 §3.2.2 use
the same shape. Browser-facing endpoints get a small HTML page instead when the browser asks
for HTML and no client redirect URI can be trusted (§4.1.2.1: "MUST NOT automatically redirect
the user-agent to the invalid redirection URI"). Every response is ``no-store``.
"""

from __future__ import annotations

import html
import json

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Send

from ..core.errors import safe_description
from .headers import NO_STORE, SECURITY_HEADERS


def error_body(error: str, description: str) -> dict[str, str]:
    return {"error": error, "error_description": safe_description(description)}


def error_response(request: Request | None, status: int, error: str, description: str) -> Response:
    """An OAuth error as a Starlette response: HTML for a browser that asks for it, else JSON."""
    body = error_body(error, description)
    if request is not None and "text/html" in request.headers.get("accept", ""):
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign-in failed</title></head>'
            '<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto">'
            f"<h1>Sign-in failed</h1><p>{html.escape(body['error_description'])}</p>"
            f"<p><small>Error: <code>{html.escape(error)}</code></small></p></body></html>"
        )
        return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)
    return JSONResponse(body, status_code=status, headers=NO_STORE)


async def send_error(
    send: Send, status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> None:
    """The same error, written by an ASGI middleware that has no Starlette request."""
    payload = json.dumps(error_body(error, description)).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in {**(headers or {}), **NO_STORE}.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})
