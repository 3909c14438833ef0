"""OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP 2026-07-28).

A ``client_id`` that is an https URL names a JSON document with the client's metadata. Wiring::

    resolver = CimdResolver(load=..., save=..., fetcher=CimdFetcher(...), policy=DomainPolicy(...))
    if is_client_id_url(client_id):
        resolved = await resolver.resolve(client_id)      # raises CimdError (oauth_error invalid_client)
        client = client_information(resolved.metadata)
"""

from .addresses import is_loopback, refusal
from .cache import (
    MAX_TTL,
    MIN_TTL,
    STALE_IF_ERROR,
    CimdResolver,
    DomainPolicy,
    ResolvedClient,
    cache_key,
    cache_ttl,
    host_matches,
)
from .document import (
    MAX_CLIENT_ID_URL_LENGTH,
    clean_display_text,
    client_information,
    ensure_client_id_url,
    is_client_id_url,
    validate_client_document,
)
from .errors import (
    CimdAddressRefused,
    CimdAuthMethodRefused,
    CimdClientIdMismatch,
    CimdContentTypeRefused,
    CimdDocumentInvalid,
    CimdDomainRefused,
    CimdError,
    CimdFetchFailed,
    CimdHttpStatus,
    CimdRedirectRefused,
    CimdRedirectUriRefused,
    CimdTimeout,
    CimdTooLarge,
    CimdUrlInvalid,
)
from .fetch import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT, CimdFetcher, FetchedDocument, Resolver, system_resolver

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "MAX_CLIENT_ID_URL_LENGTH",
    "MAX_TTL",
    "MIN_TTL",
    "STALE_IF_ERROR",
    "CimdAddressRefused",
    "CimdAuthMethodRefused",
    "CimdClientIdMismatch",
    "CimdContentTypeRefused",
    "CimdDocumentInvalid",
    "CimdDomainRefused",
    "CimdError",
    "CimdFetchFailed",
    "CimdFetcher",
    "CimdHttpStatus",
    "CimdRedirectRefused",
    "CimdRedirectUriRefused",
    "CimdResolver",
    "CimdTimeout",
    "CimdTooLarge",
    "CimdUrlInvalid",
    "DomainPolicy",
    "FetchedDocument",
    "ResolvedClient",
    "Resolver",
    "cache_key",
    "cache_ttl",
    "clean_display_text",
    "client_information",
    "ensure_client_id_url",
    "host_matches",
    "is_client_id_url",
    "is_loopback",
    "refusal",
    "system_resolver",
    "validate_client_document",
]
