"""A small, scriptable OIDC IdP for the failure paths a well-behaved IdP never takes.

It has a warm session (``/authorize`` redirects straight back with a code) and answers the
token request with an ID token that is correct or broken in exactly one way, chosen by
``mode``. It runs as a real HTTP server on loopback.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

MODES = ("ok", "wrong_nonce", "wrong_aud", "bad_signature", "wrong_iss", "expired", "no_id_token", "alg_none")


class HostileIdP:
    def __init__(self, client_id: str = "hostile-client") -> None:
        self.client_id = client_id
        self.issuer = ""
        self.mode = "ok"
        self.authorize_error: str | None = None
        self.token_status = 200
        self.access_token_lifetime = 300
        self.refreshes = 0
        self.issued: list[dict[str, Any]] = []
        #: Seconds added to the IdP's clock (to agree with a test's frozen clock).
        self.time_offset = 0.0
        self.key = RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"}, auto_kid=True)
        self.other_key = RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig", "kid": self.key.kid})
        self.nonces: dict[str, str] = {}
        self.token_requests: list[dict[str, str]] = []
        self.authorize_requests: list[dict[str, str]] = []

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": self.issuer + "/authorize",
                "token_endpoint": self.issuer + "/token",
                "jwks_uri": self.issuer + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.authorize_requests.append(params)
        redirect_uri, state = params["redirect_uri"], params["state"]
        if self.authorize_error:
            query = {"error": self.authorize_error, "state": state}
        else:
            code = secrets.token_urlsafe(16)
            self.nonces[code] = params.get("nonce", "")
            query = {"code": code, "state": state}
        return RedirectResponse(f"{redirect_uri}?{urlencode(query)}", status_code=302)

    async def token(self, request: Request) -> Response:
        form = dict(await request.form())
        self.token_requests.append(
            {k: str(v) for k, v in form.items()} | {"authorization": request.headers.get("authorization", "")}
        )
        if self.token_status != 200:
            return JSONResponse({"error": "server_error"}, status_code=self.token_status)
        body: dict[str, Any] = {
            "access_token": secrets.token_urlsafe(16),
            "token_type": "Bearer",
            "expires_in": self.access_token_lifetime,
            "refresh_token": secrets.token_urlsafe(16),
        }
        if form.get("grant_type") == "refresh_token":
            self.refreshes += 1
        elif self.mode != "no_id_token":
            body["id_token"] = self.id_token(self.nonces.pop(str(form.get("code")), ""))
        self.issued.append(body)
        return JSONResponse(body)

    def id_token(self, nonce: str) -> str:
        now = int(time.time() + self.time_offset)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "mallory",
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "email": "mallory@example.test",
        }
        key = self.key
        if self.mode == "wrong_nonce":
            claims["nonce"] = "not-the-nonce-we-sent"
        elif self.mode == "wrong_aud":
            claims["aud"] = "someone-else"
        elif self.mode == "wrong_iss":
            claims["iss"] = "https://evil.example"
        elif self.mode == "expired":
            claims["iat"], claims["exp"] = now - 7200, now - 3600
        elif self.mode == "bad_signature":
            key = self.other_key
        if self.mode == "alg_none":
            import base64
            import json

            def b64(data: dict[str, Any]) -> str:
                return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

            return f"{b64({'alg': 'none', 'kid': self.key.kid})}.{b64(claims)}."
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, key)
