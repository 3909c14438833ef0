"""Local fakes of the IdPs the presets target, built from their documented discovery documents
and token/user responses, on a loopback port (see ``run_fake``).

Each fake has a warm session: its authorization endpoint redirects straight back with a code,
after recording the request. It refuses an unregistered ``redirect_uri`` the way an IdP does
(an error page, HTTP 400) when ``registered_redirect_uris`` is set.

The discovery documents follow what each provider publishes (endpoint paths, supported scopes,
grant types, PKCE methods, auth methods), with the host replaced by the loopback one:
Auth0 ``https://TENANT.auth0.com/.well-known/openid-configuration``; Okta org
``https://ORG.okta.com/...`` and custom ``/oauth2/default/...``; Keycloak
``/realms/REALM/...``; Entra ID ``/organizations/v2.0/...`` (issuer with ``{tenantid}``, no
``code_challenge_methods_supported``, no ``grant_types_supported``); Google
``accounts.google.com``; Clerk ``*.clerk.accounts.dev``; GitHub has none (OAuth 2.0 + REST API).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from support.net import free_port, serve_in_loop

TENANT_A = "72f988bf-86f1-41af-91ab-2d7cd011db47"
TENANT_B = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


# --- documented discovery documents (paths relative to the fake's base URL) -------------------


def _auth0(base: str) -> dict[str, Any]:
    return {
        "issuer": base + "/",
        "authorization_endpoint": base + "/authorize",
        "token_endpoint": base + "/oauth/token",
        "device_authorization_endpoint": base + "/oauth/device/code",
        "userinfo_endpoint": base + "/userinfo",
        "jwks_uri": base + "/.well-known/jwks.json",
        "registration_endpoint": base + "/oidc/register",
        "revocation_endpoint": base + "/oauth/revoke",
        "scopes_supported": ["openid", "profile", "offline_access", "name", "email", "email_verified", "picture"],
        "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "token id_token"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["public"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "id_token_signing_alg_values_supported": ["HS256", "RS256", "PS256"],
        "end_session_endpoint": base + "/oidc/logout",
    }


def _okta(base: str, prefix: str) -> dict[str, Any]:
    # org server: /oauth2/v1/...; custom server "default": /oauth2/default/v1/...
    v1 = base + (prefix or "/oauth2") + "/v1"
    return {
        "issuer": base + prefix,
        "authorization_endpoint": v1 + "/authorize",
        "token_endpoint": v1 + "/token",
        "userinfo_endpoint": v1 + "/userinfo",
        "registration_endpoint": base + "/oauth2/v1/clients",
        "jwks_uri": v1 + "/keys",
        "response_types_supported": ["code", "id_token", "code id_token", "code token", "id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post", "okta_post_message"],
        "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "password"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile", "address", "phone", "offline_access", "groups"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
            "none",
        ],
        "revocation_endpoint": v1 + "/revoke",
        "introspection_endpoint": v1 + "/introspect",
        "code_challenge_methods_supported": ["S256"],
    }


def _keycloak(base: str, prefix: str) -> dict[str, Any]:
    oidc = base + prefix + "/protocol/openid-connect"
    return {
        "issuer": base + prefix,
        "authorization_endpoint": oidc + "/auth",
        "token_endpoint": oidc + "/token",
        "introspection_endpoint": oidc + "/token/introspect",
        "userinfo_endpoint": oidc + "/userinfo",
        "end_session_endpoint": oidc + "/logout",
        "jwks_uri": oidc + "/certs",
        "grant_types_supported": [
            "authorization_code",
            "implicit",
            "refresh_token",
            "password",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code",
            "urn:openid:params:grant-type:ciba",
        ],
        "response_types_supported": ["code", "none", "id_token", "token", "id_token token", "code id_token"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": ["PS384", "ES384", "RS384", "HS256", "RS256", "ES256", "PS256"],
        "token_endpoint_auth_methods_supported": [
            "private_key_jwt",
            "client_secret_basic",
            "client_secret_post",
            "tls_client_auth",
            "client_secret_jwt",
        ],
        "scopes_supported": [
            "openid",
            "offline_access",
            "profile",
            "email",
            "address",
            "phone",
            "roles",
            "web-origins",
        ],
        "code_challenge_methods_supported": ["plain", "S256"],
        "revocation_endpoint": oidc + "/revoke",
    }


def _entra(base: str, prefix: str) -> dict[str, Any]:
    tenant = prefix.split("/")[1]  # organizations | common | a tenant id
    issuer_tenant = "{tenantid}" if tenant in ("organizations", "common") else tenant
    return {
        "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{issuer_tenant}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": base + "/oidc/userinfo",
        "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "preferred_username", "name", "tid", "oid"],
        "kerberos_endpoint": f"{base}/{tenant}/kerberos",
        "tenant_region_scope": None,
        "cloud_instance_name": "microsoftonline.com",
    }


def _google(base: str) -> dict[str, Any]:
    return {
        "issuer": base,
        "authorization_endpoint": base + "/o/oauth2/v2/auth",
        "device_authorization_endpoint": base + "/device/code",
        "token_endpoint": base + "/token",
        "userinfo_endpoint": base + "/v1/userinfo",
        "revocation_endpoint": base + "/revoke",
        "jwks_uri": base + "/oauth2/v3/certs",
        "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "none"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "claims_supported": [
            "aud",
            "email",
            "email_verified",
            "exp",
            "family_name",
            "given_name",
            "iat",
            "iss",
            "name",
            "picture",
            "sub",
        ],
        "code_challenge_methods_supported": ["plain", "S256"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
        ],
    }


def _clerk(base: str) -> dict[str, Any]:
    return {
        "issuer": base,
        "authorization_endpoint": base + "/oauth/authorize",
        "token_endpoint": base + "/oauth/token",
        "revocation_endpoint": base + "/oauth/token/revoke",
        "userinfo_endpoint": base + "/oauth/userinfo",
        "jwks_uri": base + "/.well-known/jwks.json",
        "scopes_supported": ["openid", "profile", "email", "public_metadata", "private_metadata"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none", "client_secret_post"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "email", "email_verified", "name", "picture"],
        "code_challenge_methods_supported": ["S256"],
    }


def _generic(base: str, prefix: str) -> dict[str, Any]:
    return {
        "issuer": base + prefix,
        "authorization_endpoint": base + prefix + "/authorize",
        "token_endpoint": base + prefix + "/token",
        "jwks_uri": base + prefix + "/jwks",
        "userinfo_endpoint": base + prefix + "/userinfo",
        "revocation_endpoint": base + prefix + "/revoke",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile", "offline_access"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }


#: The user each fake logs in, as its ID token (or GitHub's API) describes them.
USERS: dict[str, dict[str, Any]] = {
    "auth0": {"sub": "auth0|64b1f0c2e1d3", "email": "ada@example.com", "email_verified": True, "name": "Ada"},
    "okta": {"sub": "00u1abcdEFGHijkl5d7", "email": "ada@example.com", "name": "Ada", "preferred_username": "ada"},
    "keycloak": {
        "sub": "f1c3a2b4-0000-4000-8000-000000000001",
        "email": "ada@example.com",
        "preferred_username": "ada",
    },
    "entra": {
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "oid": "00000000-0000-0000-66f3-3332eca7ea81",
        "preferred_username": "ada@contoso.com",
        "name": "Ada",
        "ver": "2.0",
    },
    "google": {"sub": "110169484474386276334", "email": "ada@gmail.com", "email_verified": True, "hd": "example.com"},
    "clerk": {"sub": "user_2NNEqL2nrIRdJ194ndJqAHwEfxC", "email": "ada@example.com", "email_verified": True},
    "oidc": {"sub": "ada", "email": "ada@example.com"},
}


@dataclass
class FakeIdP:
    kind: str
    #: Issuer path below the base: "/" (Auth0), "/oauth2/default" (Okta custom), "/realms/acme",
    #: "/organizations/v2.0" (Entra multi-tenant).
    prefix: str = ""
    client_id: str = "our-client"
    base: str = ""
    #: Entra: the tenant of the user who logs in next.
    tenant: str = TENANT_A
    #: When set, an unregistered redirect_uri gets an error page.
    registered_redirect_uris: tuple[str, ...] | None = None
    #: Changes to the published discovery document (None deletes a member).
    discovery_overrides: dict[str, Any] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    api_requests: list[tuple[str, str]] = field(default_factory=list)
    _pending: dict[str, dict[str, str]] = field(default_factory=dict)
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"alg": "RS256"}, auto_kid=True))

    @property
    def issuer(self) -> str:
        return self.base + ("/" if self.kind == "auth0" else self.prefix)

    def discovery_document(self) -> dict[str, Any]:
        builders: dict[str, Callable[[], dict[str, Any]]] = {
            "auth0": lambda: _auth0(self.base),
            "okta": lambda: _okta(self.base, self.prefix),
            "keycloak": lambda: _keycloak(self.base, self.prefix),
            "entra": lambda: _entra(self.base, self.prefix),
            "google": lambda: _google(self.base),
            "clerk": lambda: _clerk(self.base),
            "oidc": lambda: _generic(self.base, self.prefix),
        }
        doc = builders[self.kind]()
        for name, value in self.discovery_overrides.items():
            if value is None:
                doc.pop(name, None)
            else:
                doc[name] = value
        return doc

    def app(self) -> Starlette:
        if self.kind == "github":
            return Starlette(
                routes=[
                    Route("/login/oauth/authorize", self.authorize),
                    Route("/login/oauth/access_token", self.token, methods=["POST"]),
                    Route("/api/v3/user", self.github_user),
                    Route("/api/v3/user/emails", self.github_emails),
                ]
            )
        return Starlette(routes=[Route("/{path:path}", self.dispatch, methods=["GET", "POST"])])

    async def dispatch(self, request: Request) -> Response:
        doc = self.discovery_document()
        url = str(request.url).split("?")[0]
        if url == self.issuer.rstrip("/") + "/.well-known/openid-configuration":
            return JSONResponse(doc, headers={"Date": _http_date()})
        if url == doc["jwks_uri"]:
            return JSONResponse({"keys": [self.key.as_dict(private=False)]})
        if url == doc["authorization_endpoint"]:
            return await self.authorize(request)
        if url == doc["token_endpoint"] and request.method == "POST":
            return await self.token(request)
        return PlainTextResponse("not found", status_code=404)

    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.authorize_requests.append(params)
        redirect_uri = params.get("redirect_uri", "")
        if params.get("client_id") != self.client_id:
            return HTMLResponse("<h1>invalid_client</h1><p>Unknown client.</p>", status_code=400)
        if self.registered_redirect_uris is not None and redirect_uri not in self.registered_redirect_uris:
            return HTMLResponse(
                "<h1>invalid_request</h1><p>redirect_uri did not match any of the client's registered redirect_uris"
                "</p>",
                status_code=400,
            )
        code = secrets.token_urlsafe(16)
        self._pending[code] = params
        return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': params['state']})}", 302)

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.token_requests.append(
            form
            | {"authorization": request.headers.get("authorization", ""), "accept": request.headers.get("accept", "")}
        )
        if form.get("grant_type") == "refresh_token":
            return self._token_body(request, {})
        params = self._pending.pop(form.get("code", ""), None)
        if params is None or form.get("redirect_uri") != params.get("redirect_uri"):
            return self._error(request, "invalid_grant")
        if _s256(form.get("code_verifier", "")) != params.get("code_challenge"):
            return self._error(request, "invalid_grant")
        return self._token_body(request, params)

    def _error(self, request: Request, error: str) -> Response:
        if self.kind == "github":  # GitHub answers errors with 200 (its docs: "bad_verification_code")
            return JSONResponse({"error": "bad_verification_code", "error_description": "The code is incorrect."})
        return JSONResponse({"error": error}, status_code=400)

    def _token_body(self, request: Request, params: dict[str, str]) -> Response:
        access = "gho_" + secrets.token_urlsafe(24) if self.kind == "github" else secrets.token_urlsafe(24)
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": 3600}
        if self.kind == "github":
            body = {"access_token": access, "token_type": "bearer", "scope": params.get("scope", "").replace(" ", ",")}
            if "application/json" not in request.headers.get("accept", ""):
                # GitHub's default is form encoding.
                return Response(urlencode(body), media_type="application/x-www-form-urlencoded")
            self.issued_github_token = access
            return JSONResponse(body)
        scopes = params.get("scope", "").split()
        refresh = (
            "offline_access" in scopes or params.get("access_type") == "offline" or self.kind in ("keycloak", "clerk")
        )
        if refresh:
            body["refresh_token"] = secrets.token_urlsafe(24)
        if "openid" in scopes:
            body["id_token"] = self.id_token(params.get("nonce", ""))
        body["scope"] = " ".join(s for s in scopes if s != "offline_access" or refresh)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims = dict(USERS[self.kind])
        issuer = self.discovery_document()["issuer"]
        if self.kind == "entra":
            claims["tid"] = self.tenant
            issuer = issuer.replace("{tenantid}", self.tenant)
        claims.update({"iss": issuer, "aud": self.client_id, "iat": now, "nbf": now, "exp": now + 3600, "nonce": nonce})
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)

    # GitHub's REST API (https://docs.github.com/en/rest/users)

    def _github_authorized(self, request: Request) -> bool:
        self.api_requests.append((request.url.path, request.headers.get("accept", "")))
        return request.headers.get("authorization") == f"Bearer {getattr(self, 'issued_github_token', None)}"

    async def github_user(self, request: Request) -> Response:
        if not self._github_authorized(request):
            return JSONResponse({"message": "Requires authentication"}, status_code=401)
        return JSONResponse(
            {
                "login": "octocat",
                "id": 583231,
                "node_id": "MDQ6VXNlcjU4MzIzMQ==",
                "type": "User",
                "avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4",
                "html_url": "https://github.com/octocat",
                "name": "The Octocat",
                "email": None,
            }
        )

    async def github_emails(self, request: Request) -> Response:
        if not self._github_authorized(request):
            return JSONResponse({"message": "Requires authentication"}, status_code=401)
        return JSONResponse(
            [
                {"email": "octocat@old.example", "primary": False, "verified": True, "visibility": None},
                {"email": "unverified@example.com", "primary": False, "verified": False, "visibility": None},
                {"email": "octocat@github.com", "primary": True, "verified": True, "visibility": "public"},
            ]
        )


def _http_date() -> str:
    from email.utils import formatdate

    return formatdate(usegmt=True)


@contextlib.asynccontextmanager
async def run_fake(kind: str, prefix: str = "", **options: Any) -> AsyncIterator[FakeIdP]:
    """The fake of ``kind`` on a free loopback port, for the duration of the block."""
    port = free_port()
    fake = FakeIdP(kind=kind, prefix=prefix, base=f"http://127.0.0.1:{port}", **options)
    async with serve_in_loop(fake.app(), port):
        yield fake


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(url.split("?", 1)[1]))
