"""Validating a Client ID Metadata Document into client metadata (draft-ietf-oauth-client-id-metadata-document).

:func:`ensure_client_id_url` checks the URL itself (draft §3); :func:`validate_client_document`
checks the fetched JSON object and returns a whitelisted metadata dict for the SDK's
``OAuthClientInformationFull`` (see :func:`client_information`). Public clients only:
``private_key_jwt`` is refused too, because the SDK's /token cannot verify a client assertion.
Members this server has no use for are dropped (RFC 7591 §2: unknown metadata is ignored).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from mcp.shared.auth import OAuthClientInformationFull

from ..core.redirect_policy import DEFAULT_PRIVATE_USE_SCHEMES, RedirectUriRefused, ensure_redirect_uri_allowed
from .errors import (
    CimdAuthMethodRefused,
    CimdClientIdMismatch,
    CimdDocumentInvalid,
    CimdRedirectUriRefused,
    CimdUrlInvalid,
)

#: Same cap as ``get_client`` applies to every client_id.
MAX_CLIENT_ID_URL_LENGTH = 256
MAX_REDIRECT_URIS = 20
MAX_URI_LENGTH = 2000
MAX_NAME_LENGTH = 200
MAX_SCOPE_LENGTH = 1000
GRANT_TYPES = frozenset({"authorization_code", "refresh_token"})
RESPONSE_TYPES = frozenset({"code"})
APPLICATION_TYPES = frozenset({"native", "web"})

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# Percent-encoded dots normalise to dots (RFC 3986 §6.2.2.2), so "%2e%2E" is a ".." segment.
_DOT_SEGMENT = re.compile(r"^(\.|%2e){1,2}$", re.IGNORECASE)
_SHARED_SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post", "client_secret_jwt"})
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})


def is_client_id_url(client_id: str) -> bool:
    """Cheap routing test: does this client_id name a metadata document (rather than a registration)?

    Draft §7.1: this server never mints client ids starting with ``https://``.
    """
    return client_id.startswith("https://")


def ensure_client_id_url(url: str) -> str:
    """Draft §3 Client Identifier URL checks; returns the lower-cased host (shown on consent, draft §8.5)."""
    if len(url) > MAX_CLIENT_ID_URL_LENGTH:
        raise CimdUrlInvalid("The client_id URL is too long")
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url) or "\\" in url:
        raise CimdUrlInvalid("The client_id URL must be printable ASCII without spaces or backslashes")
    if not url.startswith("https://"):
        raise CimdUrlInvalid("The client_id URL must use the https scheme")
    if "#" in url:
        raise CimdUrlInvalid("The client_id URL must not contain a fragment")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises on a malformed port
    except ValueError as exc:
        raise CimdUrlInvalid("The client_id URL is malformed") from exc
    if "@" in parts.netloc:
        raise CimdUrlInvalid("The client_id URL must not contain user information")
    if not host:
        raise CimdUrlInvalid("The client_id URL must name a host")
    if not parts.path or parts.path == "/":
        raise CimdUrlInvalid("The client_id URL must contain a path")
    if any(_DOT_SEGMENT.match(segment) for segment in parts.path.split("/")):
        raise CimdUrlInvalid("The client_id URL must not contain dot segments")
    return host.lower()


def _string(document: Mapping[str, Any], key: str, max_length: int) -> str | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise CimdDocumentInvalid(
            f"The client metadata member {key} must be a string of at most {max_length} characters"
        )
    return value


def _string_list(document: Mapping[str, Any], key: str, max_items: int, max_length: int) -> list[str] | None:
    value = document.get(key)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or len(value) > max_items
        or not all(isinstance(v, str) and 0 < len(v) <= max_length for v in value)
    ):
        raise CimdDocumentInvalid(
            f"The client metadata member {key} must be a non-empty list of at most {max_items} strings"
        )
    return list(dict.fromkeys(value))


def clean_display_text(value: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """Drop control and format characters (bidi overrides, zero-width joiners) and collapse whitespace."""
    spaced = "".join(" " if c.isspace() else c for c in value)
    kept = "".join(c for c in spaced if unicodedata.category(c) not in {"Cc", "Cf", "Co", "Cs"})
    return " ".join(kept.split())[:max_length]


def _https_uri_or_none(value: str | None) -> str | None:
    # Display links only; a non-https value is dropped rather than refusing the client (draft §8.6, §9.2).
    if value is None or not value.startswith("https://") or any(c.isspace() for c in value):
        return None
    try:
        return value if urlsplit(value).hostname else None
    except ValueError:
        return None


def _ensure_public_client(document: Mapping[str, Any]) -> str:
    # Draft §4.1: no shared-secret method, no client_secret / client_secret_expires_at, no private keys.
    if any(key.startswith("client_secret") for key in document):
        raise CimdAuthMethodRefused("Client metadata documents must not contain a client secret")
    method = document.get("token_endpoint_auth_method", "none")
    if method in _SHARED_SECRET_METHODS or (isinstance(method, str) and "secret" in method):
        raise CimdAuthMethodRefused("Client metadata documents must not use a shared-secret authentication method")
    if method != "none":
        raise CimdAuthMethodRefused()
    jwks = document.get("jwks")
    if isinstance(jwks, Mapping) and any(
        isinstance(key, Mapping) and _PRIVATE_JWK_MEMBERS & set(key) for key in jwks.get("keys") or ()
    ):
        raise CimdAuthMethodRefused("Client metadata documents must not contain private key material")
    return "none"


def validate_client_document(
    url: str,
    document: Mapping[str, Any],
    *,
    private_use_schemes: Iterable[str] = DEFAULT_PRIVATE_USE_SCHEMES,
    allowed_redirect_hosts: Iterable[str] = (),
) -> dict[str, Any]:
    """Check ``document`` fetched from ``url``; return metadata for :func:`client_information`.

    Raises a :class:`.errors.CimdDocumentInvalid` subclass (or :class:`.errors.CimdUrlInvalid`).
    Absent ``grant_types`` / ``response_types`` are left absent so the SDK's defaults apply, exactly
    as for a registered client.
    """
    ensure_client_id_url(url)
    # Draft §4: client_id MUST equal the URL, simple string comparison (RFC 3986 §6.2.1).
    if document.get("client_id") != url:
        raise CimdClientIdMismatch()
    metadata: dict[str, Any] = {"client_id": url, "token_endpoint_auth_method": _ensure_public_client(document)}

    application_type = document.get("application_type")
    if application_type is not None and application_type not in APPLICATION_TYPES:
        raise CimdDocumentInvalid("The client metadata member application_type must be native or web")

    redirect_uris = _string_list(document, "redirect_uris", MAX_REDIRECT_URIS, MAX_URI_LENGTH)
    if redirect_uris is None:
        # Draft §4.2 / RFC 9700 §2.1: redirect URIs must be registered; here they come from the document.
        raise CimdRedirectUriRefused("The client metadata document must list redirect_uris")
    schemes, hosts = tuple(private_use_schemes), tuple(allowed_redirect_hosts)
    for uri in redirect_uris:
        try:
            ensure_redirect_uri_allowed(uri, schemes, hosts, application_type)
        except RedirectUriRefused as exc:
            raise CimdRedirectUriRefused() from exc
    metadata["redirect_uris"] = redirect_uris
    if application_type is not None:
        metadata["application_type"] = application_type

    grant_types = _string_list(document, "grant_types", 4, 64)
    if grant_types is not None:
        if not set(grant_types) <= GRANT_TYPES:
            raise CimdDocumentInvalid(
                "The client metadata grant_types may only be authorization_code and refresh_token"
            )
        metadata["grant_types"] = grant_types
    response_types = _string_list(document, "response_types", 2, 64)
    if response_types is not None:
        if not set(response_types) <= RESPONSE_TYPES:
            raise CimdDocumentInvalid("The client metadata response_types may only be code")
        metadata["response_types"] = response_types

    scope = _string(document, "scope", MAX_SCOPE_LENGTH)
    if scope is not None:
        tokens = scope.split(" ")
        if not all(_SCOPE_TOKEN.fullmatch(t) for t in tokens):
            raise CimdDocumentInvalid("The client metadata scope is not a space-separated list of scope tokens")
        metadata["scope"] = scope

    name = _string(document, "client_name", 4 * MAX_NAME_LENGTH)
    if name is not None and clean_display_text(name):
        metadata["client_name"] = clean_display_text(name)
    for key in ("client_uri", "logo_uri", "tos_uri", "policy_uri"):
        link = _https_uri_or_none(_string(document, key, MAX_URI_LENGTH))
        if link is not None:
            metadata[key] = link
    for key in ("software_id", "software_version"):
        text = _string(document, key, MAX_NAME_LENGTH)
        if text is not None and clean_display_text(text):
            metadata[key] = clean_display_text(text)
    return metadata


def client_information(metadata: Mapping[str, Any]) -> OAuthClientInformationFull:
    """The SDK client object for validated metadata (both mcp majors)."""
    return OAuthClientInformationFull.model_validate(dict(metadata))
