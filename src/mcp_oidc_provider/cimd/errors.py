"""Why a Client ID Metadata Document was refused, one class per reason.

::

    CimdError                          invalid_client   (every refusal; see below)
    ├── CimdUrlInvalid                 the client_id is no Client Identifier URL (draft §3)
    ├── CimdDomainRefused              the operator's domain policy denies the host (draft §8.9)
    ├── CimdAddressRefused             the host resolves to a special-use address (draft §8.6, RFC 6890)
    ├── CimdFetchFailed                network error, DNS failure, 5xx or 429        transient
    │   └── CimdTimeout                the total time limit ran out                  transient
    ├── CimdHttpStatus                 any other status than 200 (draft §5)
    ├── CimdRedirectRefused            a 3xx: redirects are never followed (draft §5)
    ├── CimdContentTypeRefused         not application/json or application/*+json (draft §4)
    ├── CimdTooLarge                   over the size cap (draft §8.7)
    └── CimdDocumentInvalid            not a JSON object, or a member fails validation
        ├── CimdClientIdMismatch       document client_id differs from the URL (draft §4)
        ├── CimdAuthMethodRefused      shared-secret method or secret present (draft §4.1)
        └── CimdRedirectUriRefused     a redirect URI fails the registration policy

OAuth code: ``invalid_client`` for all of them. Draft §5.1 says the authorization server
SHOULD abort the request when fetching fails, and §6 names the resulting error "an error about
an invalid client as described in Section 4.1.2.1 of RFC 6749": at /authorize the client
identifier is invalid, so the server informs the user and MUST NOT redirect (RFC 6749
§4.1.2.1); at /token and /revoke it is ``invalid_client`` (RFC 6749 §5.2, HTTP 401).

``transient`` marks failures after which a stored copy may still be served (stale-if-error,
RFC 5861 §4): only network trouble and server errors, never a document that answered wrongly.
Descriptions are fixed strings (RFC 6749 §4.1.2.1 character set); nothing fetched is echoed.
"""

from __future__ import annotations

from typing import Literal


class CimdError(Exception):
    """Base of every CIMD refusal. ``reason`` is a stable token for audit logs."""

    oauth_error: Literal["invalid_client"] = "invalid_client"
    reason: str = "cimd_error"
    transient: bool = False
    default_description = "The client metadata document could not be used"

    def __init__(self, description: str | None = None) -> None:
        self.description = description or self.default_description
        super().__init__(self.description)


class CimdUrlInvalid(CimdError):
    reason = "url_invalid"
    default_description = "The client_id is not a valid client metadata document URL"


class CimdDomainRefused(CimdError):
    reason = "domain_refused"
    default_description = "Clients from this domain are not allowed on this server"


class CimdAddressRefused(CimdError):
    reason = "address_refused"
    default_description = "The client_id host resolves to an address this server does not contact"


class CimdFetchFailed(CimdError):
    reason = "fetch_failed"
    transient = True
    default_description = "The client metadata document could not be fetched"


class CimdTimeout(CimdFetchFailed):
    reason = "timeout"
    default_description = "Fetching the client metadata document took too long"


class CimdHttpStatus(CimdError):
    reason = "http_status"
    default_description = "The client metadata document URL did not answer 200 OK"


class CimdRedirectRefused(CimdError):
    reason = "redirect"
    default_description = "The client metadata document URL answered with a redirect, which is not followed"


class CimdContentTypeRefused(CimdError):
    reason = "content_type"
    default_description = "The client metadata document is not served as application/json"


class CimdTooLarge(CimdError):
    reason = "too_large"
    default_description = "The client metadata document is larger than this server accepts"


class CimdDocumentInvalid(CimdError):
    reason = "document_invalid"
    default_description = "The client metadata document is not valid"


class CimdClientIdMismatch(CimdDocumentInvalid):
    reason = "client_id_mismatch"
    default_description = "The client_id in the client metadata document does not equal its URL"


class CimdAuthMethodRefused(CimdDocumentInvalid):
    reason = "auth_method"
    default_description = "Client metadata documents may only describe public clients (token_endpoint_auth_method none)"


class CimdRedirectUriRefused(CimdDocumentInvalid):
    reason = "redirect_uri"
    default_description = "A redirect URI in the client metadata document is not allowed"
