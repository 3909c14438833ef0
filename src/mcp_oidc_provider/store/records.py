"""The records the provider keeps: pydantic models with a schema version, one per collection.

Nothing here knows a key or a collection name: that is :mod:`.repository`'s job.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..core.models import UpstreamTokens

SCHEMA_VERSION = 1


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore")
    v: int = SCHEMA_VERSION


class ClientRecord(Record):
    #: RFC 7591 client metadata as registered, without any secret.
    metadata: dict[str, Any]
    #: Confidential clients get a secret derived from the server's secret key and the client
    #: id; the record itself holds nothing that authenticates.
    has_secret: bool = False
    #: Issue 8 §4: False until a code is redeemed; until then the record lives only
    #: ``unused_client_ttl``. Records from before the field existed count as used.
    used: bool = True


class LoginTransaction(Record):
    """One upstream login in flight, keyed by the digest of the ``state`` we send upstream."""

    client_id: str
    redirect_uri: str
    redirect_uri_provided_explicitly: bool
    code_challenge: str
    client_state: str | None = None
    scopes: list[str]
    resource: str
    nonce: str
    code_verifier: str
    created_at: float
    #: SHA-256 of the browser-binding cookie of the browser that saw the consent step; the
    #: upstream callback is accepted only from that browser.
    browser_binding: str | None = None


class GrantRecord(Record):
    """What a user allowed a client: every code, access and refresh token carries its id.

    In the store it is two records (issue 8 §1): the immutable grant (:class:`StoredGrant`,
    written when the login completes and once more when its code is redeemed, never by a
    refresh) and its upstream tokens (:class:`StoredUpstream`, rewritten by each upstream
    refresh). ``upstream`` is filled only by :meth:`.Repository.load_grant_and_upstream`.
    """

    grant_id: str
    client_id: str
    subject: str
    scopes: list[str]
    resource: str
    claims: dict[str, Any] = Field(default_factory=dict)
    upstream: UpstreamTokens | None = None
    created_at: float
    #: Absolute end of the grant (``created_at + grant_max_lifetime``); set when its code is
    #: redeemed, never moved by a refresh.
    expires_at: float | None = None


class StoredGrant(Record):
    """A grant as it lies in the store: the personal part (claims) sealed. Immutable."""

    grant_id: str
    client_id: str
    subject: str
    scopes: list[str]
    resource: str
    created_at: float
    expires_at: float | None = None
    sealed: str


class StoredUpstream(Record):
    """A grant's tokens at the upstream IdP, sealed; keyed by the grant id.

    ``generation`` counts upstream refreshes: the single-flight lock of each generation is a
    set of pre-created tokens (:class:`UpstreamLockToken`) that only the writer of that
    generation creates. ``checked_at``: when the IdP last confirmed the user's session (the
    login, or a successful upstream refresh).
    """

    grant_id: str
    generation: int = 0
    checked_at: float
    sealed: str


class UpstreamLockToken(Record):
    """Exists while the right to refresh one generation (one attempt) is unclaimed."""

    grant_id: str
    generation: int
    attempt: int


class UpstreamLease(Record):
    """Written by the holder of an upstream-refresh lock: until ``deadline`` nobody takes over."""

    deadline: float


class RevokedGrant(Record):
    """A tombstone: the grant was revoked and must never be loaded or written again."""

    revoked_at: float


class CodeRecord(Record):
    grant_id: str
    client_id: str
    subject: str
    scopes: list[str]
    resource: str
    code_challenge: str
    redirect_uri: str
    redirect_uri_provided_explicitly: bool
    expires_at: float


class RefreshTokenRecord(Record):
    grant_id: str
    client_id: str
    subject: str
    scopes: list[str]
    resource: str
    expires_at: int


class SpentMarker(Record):
    """A code or refresh token that was used: presenting it again is replay (RFC 9700 §4.14)."""

    grant_id: str
    spent_at: float


class KeyMaterial(Record):
    #: A private JWKS (RFC 7517) with our signing keys, newest first.
    jwks: dict[str, Any]
    #: Base64url secret for deriving client secrets.
    secret: str


class PublicKeySet(Record):
    """The public half of our JWKS, for MCP servers in other processes (proxy mode)."""

    jwks: dict[str, Any]


class SealedPart(BaseModel):
    claims: dict[str, Any] = Field(default_factory=dict)
    #: Schema-1 grants kept their upstream tokens here; new ones use :class:`StoredUpstream`.
    upstream: UpstreamTokens | None = None


class ClientDocumentRecord(Record):
    """A fetched and validated Client ID Metadata Document, with its freshness (:mod:`..cimd.cache`)."""

    document: dict[str, Any]


# issue 8 §2: an approval is a record, never a cookie alone.


class ConsentApproval(Record):
    """A remembered consent: what one browser approved for one client, and nothing wider.

    Keyed by an HMAC of the approval id the remember cookie carries; ``mac`` (under a
    server-only label, over every field and the browser binding) makes a record written by
    anyone without the server's secret worthless.
    """

    client_id: str
    redirect_uri: str
    resource: str
    scopes: list[str]
    expires_at: float
    mac: str


class LoginApproval(Record):
    """The user approved this login (or the server decided no consent was needed).

    Keyed by the digest of the login id; ``mac`` covers the login id, the browser binding and
    the request parameters. The callback refuses a login without a valid one.
    """

    mac: str


# issue 10 item 5: listing grants by user and by client, and signing-key rotation (admin).


class GrantIndexEntry(Record):
    """One grant in the index of its user or of its client; the grant itself stays the truth."""

    grant_id: str
    created_at: float


class RotatingKey(Record):
    """Where one signing key is in its rotation; keys without an entry sign or just verify."""

    #: ``next``: published and verifying, not yet signing; ``retiring``: no longer signs.
    state: str
    #: When it became ``next`` (added) or ``retiring`` (stopped signing).
    since: float


class KeyRotation(Record):
    """The rotation state of the signing keys in :class:`KeyMaterial`, by ``kid``."""

    keys: dict[str, RotatingKey] = Field(default_factory=dict)


# issue 12


class RevocationEpoch(Record):
    """Changes on every revocation: the one record other processes poll to learn that their
    bearer caches may hold a revoked grant (see :mod:`..bearer`)."""

    value: str
    changed_at: float
