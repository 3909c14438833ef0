"""The error hierarchy, and the one place that maps it to OAuth error codes.

::

    OIDCProviderError                      server_error (redirect at /authorize; invalid_request at /token)
    ├── ConfigurationError                 raised at start-up, never on a request
    ├── InvalidRequest                     invalid_request      RFC 6749 §4.1.2.1 / §5.2
    ├── AccessDenied                       access_denied        RFC 6749 §4.1.2.1
    ├── InvalidTarget                      invalid_target       RFC 8707 §2
    ├── InvalidGrant                       invalid_grant        RFC 6749 §5.2
    ├── UnknownLoginTransaction            invalid_request      (no client to redirect to)
    └── UpstreamError                      server_error         the IdP answered wrongly
        ├── UpstreamUnavailable            temporarily_unavailable (IdP unreachable)
        │   └── UpstreamTemporarilyUnavailable   for tools: retried, still failing
        ├── UpstreamGrantInvalid           the IdP answered invalid_grant on refresh
        ├── UpstreamSessionEnded           for tools: the user's IdP session ended, grant revoked
        └── UpstreamIdTokenInvalid         server_error         OIDC Core §3.1.3.7 failed

Descriptions are written for the end user and never carry a token, code, secret or e-mail:
details go to the audit log instead.
"""

from __future__ import annotations

import re
from typing import Literal

from mcp.server.auth.provider import AuthorizeError, RegistrationError, TokenError

#: RFC 6749 §4.1.2.1 / §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E.
_OUTSIDE_DESCRIPTION_CHARSET = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")


def safe_description(text: str) -> str:
    """The description as RFC 6749 §4.1.2.1 allows it: anything else is dropped, never escaped."""
    return _OUTSIDE_DESCRIPTION_CHARSET.sub("", text.replace("\u00a7", "section "))[:500]


AuthorizeErrorCode = Literal[
    "invalid_request",
    "access_denied",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
    "invalid_target",
]
TokenErrorCode = Literal["invalid_request", "invalid_grant", "invalid_scope", "invalid_target"]


class OIDCProviderError(Exception):
    """Base of every error this package raises on purpose."""

    code: AuthorizeErrorCode = "server_error"

    def __init__(self, description: str = "The authorization server could not complete the request") -> None:
        super().__init__(description)
        self.description = description


class ConfigurationError(OIDCProviderError):
    """The provider cannot start with the configuration it was given."""


class InvalidRequest(OIDCProviderError):
    code = "invalid_request"


class AccessDenied(OIDCProviderError):
    code = "access_denied"


class InvalidTarget(OIDCProviderError):
    code = "invalid_target"


class InvalidGrant(OIDCProviderError):
    code = "invalid_request"  # never reaches /authorize; see to_token_error


class UnknownLoginTransaction(InvalidRequest):
    """The upstream ``state`` names no live login: expired, replayed or forged."""


class UpstreamError(OIDCProviderError):
    code: AuthorizeErrorCode = "server_error"


class UpstreamUnavailable(UpstreamError):
    code: AuthorizeErrorCode = "temporarily_unavailable"


class UpstreamIdTokenInvalid(UpstreamError):
    code: AuthorizeErrorCode = "server_error"


# issue 8 §3 / issue 11 item 3


class UpstreamGrantInvalid(UpstreamError):
    """The IdP refused our upstream refresh token with ``invalid_grant`` (RFC 6749 §5.2): the
    user's session there ended (user disabled, consent withdrawn, token revoked)."""


class UpstreamSessionEnded(UpstreamError):
    """For tools: the user's session at the identity provider has ended and the grant was
    revoked; the user must sign in again."""


class UpstreamTemporarilyUnavailable(UpstreamUnavailable):
    """For tools: fresh upstream tokens are needed but the identity provider did not answer
    after retries; try again later (the grant is kept)."""


def _sdk_supports_invalid_target() -> bool:
    # mcp 1.x has no "invalid_target" in its Literal and answers it with HTTP 500 at /token.
    from mcp.server.auth.provider import TokenErrorCode as SdkTokenErrorCode

    return "invalid_target" in getattr(SdkTokenErrorCode, "__args__", ())


SDK_HAS_INVALID_TARGET = _sdk_supports_invalid_target()


def authorize_error_code(error: OIDCProviderError) -> AuthorizeErrorCode:
    """RFC 6749 §4.1.2.1 code for an error at /authorize or the upstream callback."""
    if isinstance(error, InvalidTarget) and not SDK_HAS_INVALID_TARGET:
        return "invalid_request"
    return error.code


def to_authorize_error(error: OIDCProviderError) -> AuthorizeError:
    return AuthorizeError(error=authorize_error_code(error), error_description=safe_description(error.description))


def registration_error(
    code: Literal["invalid_redirect_uri", "invalid_client_metadata"], text: str
) -> RegistrationError:
    """RFC 7591 §3.2.2, with a description in the RFC 6749 character set."""
    return RegistrationError(error=code, error_description=safe_description(text))


def to_token_error(error: OIDCProviderError) -> TokenError:
    """RFC 6749 §5.2 error for /token. RFC 8707 §2: ``invalid_target`` where the SDK can send it."""
    if isinstance(error, InvalidTarget):
        code: TokenErrorCode = "invalid_target" if SDK_HAS_INVALID_TARGET else "invalid_request"
    elif isinstance(error, InvalidGrant):
        code = "invalid_grant"
    else:
        code = "invalid_request"
    return TokenError(error=code, error_description=safe_description(error.description))
