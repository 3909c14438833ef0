"""The typed store: the only code that knows collection names and keys.

Every record is a pydantic model with a schema version, kept in its own named collection of
any py-key-value-aio :class:`AsyncKeyValue`, always with a TTL. Codes, refresh tokens and login
``state`` values are bearer secrets, so they are never used as keys: a key is the SHA-256 of
the value, and the value itself is never stored (a dump of the store yields no usable token).

Single use is enforced by *claiming*: read the record, then ``delete()`` it and go on only if
``delete()`` returned True. Exactly one concurrent caller sees True, on the memory, disk and
Redis backends alike (py-key-value-aio has no get-and-delete or compare-and-set).
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any, Generic, TypeVar

from key_value.aio.protocols import AsyncKeyValue
from pydantic import BaseModel, ConfigDict, Field

from .sealing import Sealer, SealError

logger = logging.getLogger("mcp_oidc_provider.store")

SCHEMA_VERSION = 1
NAMESPACE = "mcp-oidc"


def is_store_failure(exc: BaseException) -> bool:
    """Whether an exception means the store could not be reached or answered wrongly."""
    if isinstance(exc, (OSError, ConnectionError, TimeoutError)):
        return True
    module = type(exc).__module__
    return module.startswith(("redis", "key_value", "valkey", "glide", "asyncpg", "diskcache", "sqlite3"))


def digest(value: str) -> str:
    """Storage key for a secret value: its SHA-256, hex."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore")
    v: int = SCHEMA_VERSION


class ClientRecord(Record):
    #: RFC 7591 client metadata as registered, without any secret.
    metadata: dict[str, Any]
    #: Confidential clients get a secret derived from the server's secret key and the client
    #: id; the record itself holds nothing that authenticates.
    has_secret: bool = False


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


class UpstreamTokens(BaseModel):
    """The user's tokens at the upstream IdP, as our tools may need them."""

    model_config = ConfigDict(frozen=True)

    access_token: str
    token_type: str = "Bearer"
    id_token: str | None = None
    refresh_token: str | None = None
    expires_at: float | None = None
    scope: str | None = None

    def __repr__(self) -> str:  # never print a token by accident
        return f"UpstreamTokens(token_type={self.token_type!r}, expires_at={self.expires_at!r})"

    __str__ = __repr__


class GrantRecord(Record):
    """What a user allowed a client: every code, access and refresh token carries its id."""

    grant_id: str
    client_id: str
    subject: str
    scopes: list[str]
    resource: str
    claims: dict[str, Any] = Field(default_factory=dict)
    upstream: UpstreamTokens | None = None
    created_at: float


class StoredGrant(Record):
    """A grant as it lies in the store: the personal and upstream parts sealed."""

    grant_id: str
    client_id: str
    subject: str
    scopes: list[str]
    resource: str
    created_at: float
    sealed: str


class _SealedPart(BaseModel):
    claims: dict[str, Any] = Field(default_factory=dict)
    upstream: UpstreamTokens | None = None


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


R = TypeVar("R", bound=Record)


class Collection(Generic[R]):
    def __init__(self, kv: AsyncKeyValue, name: str, model: type[R]) -> None:
        self._kv = kv
        self._name = f"{NAMESPACE}-{name}"
        self._model = model

    async def get(self, key: str) -> R | None:
        raw = await self._kv.get(key, collection=self._name)
        if raw is None:
            return None
        # A record that does not validate is corruption, not absence: raise it.
        return self._model.model_validate(raw)

    async def get_with_ttl(self, key: str) -> tuple[R, float | None] | None:
        raw, remaining = await self._kv.ttl(key, collection=self._name)
        if raw is None:
            return None
        return self._model.model_validate(raw), remaining

    async def put(self, key: str, record: R, ttl: float) -> None:
        # Redis rounds TTLs down to whole seconds (minimum 1): round up so nothing dies early.
        await self._kv.put(key, record.model_dump(mode="json"), collection=self._name, ttl=max(1, math.ceil(ttl)))

    async def delete(self, key: str) -> bool:
        return await self._kv.delete(key, collection=self._name)

    async def claim(self, key: str) -> R | None:
        """Return the record to exactly one caller, removing it (single use)."""
        record = await self.get(key)
        if record is None:
            return None
        if not await self.delete(key):
            return None
        return record


class Repository:
    """Typed access to everything the provider keeps."""

    def __init__(self, kv: AsyncKeyValue) -> None:
        self.kv = kv
        self._clients = Collection(kv, "clients", ClientRecord)
        self._logins = Collection(kv, "logins", LoginTransaction)
        self._grants = Collection(kv, "grants", StoredGrant)
        #: Seals grants (see :mod:`.sealing`); set once the server's keys are known.
        self.sealer: Sealer | None = None
        self._opened: dict[str, _SealedPart] = {}
        self._codes = Collection(kv, "codes", CodeRecord)
        self._spent_codes = Collection(kv, "spent-codes", SpentMarker)
        self._refresh = Collection(kv, "refresh-tokens", RefreshTokenRecord)
        self._spent_refresh = Collection(kv, "spent-refresh-tokens", SpentMarker)
        self._keys = Collection(kv, "keys", KeyMaterial)
        self._public_keys = Collection(kv, "public-keys", PublicKeySet)

    # clients (RFC 7591)
    async def save_client(self, client_id: str, record: ClientRecord, ttl: float) -> None:
        await self._clients.put(client_id, record, ttl)

    async def load_client_with_ttl(self, client_id: str) -> tuple[ClientRecord, float | None] | None:
        return await self._clients.get_with_ttl(client_id)

    # upstream login transactions
    async def start_login(self, state: str, txn: LoginTransaction, ttl: float) -> None:
        await self._logins.put(digest(state), txn, ttl)

    async def load_login(self, state: str) -> tuple[LoginTransaction, float | None] | None:
        return await self._logins.get_with_ttl(digest(state))

    async def claim_login(self, state: str) -> LoginTransaction | None:
        return await self._logins.claim(digest(state))

    # grants
    def _sealer(self) -> Sealer:
        if self.sealer is None:
            raise RuntimeError("the repository has no sealer yet")
        return self.sealer

    def _seal(self, grant: GrantRecord) -> StoredGrant:
        part = _SealedPart(claims=grant.claims, upstream=grant.upstream)
        return StoredGrant(
            grant_id=grant.grant_id,
            client_id=grant.client_id,
            subject=grant.subject,
            scopes=grant.scopes,
            resource=grant.resource,
            created_at=grant.created_at,
            sealed=self._sealer().seal(part.model_dump_json().encode()),
        )

    def _open(self, stored: StoredGrant) -> GrantRecord | None:
        # The bearer check opens the same grant on every request: keep recent plaintexts.
        part = self._opened.get(stored.sealed)
        if part is None:
            try:
                part = _SealedPart.model_validate_json(self._sealer().open(stored.sealed))
            except SealError:
                logger.error(
                    "grant %s could not be decrypted: is ENCRYPTION_KEYS (or SECRET_KEY) the authorization "
                    "server's, and was no key retired too early?",
                    stored.grant_id,
                )
                return None
            self._opened[stored.sealed] = part
            if len(self._opened) > 1024:
                self._opened.pop(next(iter(self._opened)))
        return GrantRecord(
            grant_id=stored.grant_id,
            client_id=stored.client_id,
            subject=stored.subject,
            scopes=stored.scopes,
            resource=stored.resource,
            created_at=stored.created_at,
            claims=part.claims,
            upstream=part.upstream,
        )

    async def save_grant(self, grant: GrantRecord, ttl: float) -> None:
        await self._grants.put(grant.grant_id, self._seal(grant), ttl)

    async def load_grant(self, grant_id: str) -> GrantRecord | None:
        stored = await self._grants.get(grant_id)
        return self._open(stored) if stored is not None else None

    async def load_grant_with_ttl(self, grant_id: str) -> tuple[GrantRecord, float | None] | None:
        found = await self._grants.get_with_ttl(grant_id)
        if found is None:
            return None
        grant = self._open(found[0])
        return (grant, found[1]) if grant is not None else None

    async def revoke_grant(self, grant_id: str) -> bool:
        return await self._grants.delete(grant_id)

    # authorization codes
    async def save_code(self, code: str, record: CodeRecord, ttl: float) -> None:
        await self._codes.put(digest(code), record, ttl)

    async def load_code(self, code: str) -> CodeRecord | None:
        return await self._codes.get(digest(code))

    async def claim_code(self, code: str) -> CodeRecord | None:
        return await self._codes.claim(digest(code))

    async def mark_code_spent(self, code: str, marker: SpentMarker, ttl: float) -> None:
        await self._spent_codes.put(digest(code), marker, ttl)

    async def spent_code(self, code: str) -> SpentMarker | None:
        return await self._spent_codes.get(digest(code))

    # refresh tokens
    async def save_refresh_token(self, token: str, record: RefreshTokenRecord, ttl: float) -> None:
        await self._refresh.put(digest(token), record, ttl)

    async def load_refresh_token(self, token: str) -> RefreshTokenRecord | None:
        return await self._refresh.get(digest(token))

    async def claim_refresh_token(self, token: str) -> RefreshTokenRecord | None:
        return await self._refresh.claim(digest(token))

    async def delete_refresh_token(self, token: str) -> bool:
        return await self._refresh.delete(digest(token))

    async def mark_refresh_token_spent(self, token: str, marker: SpentMarker, ttl: float) -> None:
        await self._spent_refresh.put(digest(token), marker, ttl)

    async def spent_refresh_token(self, token: str) -> SpentMarker | None:
        return await self._spent_refresh.get(digest(token))

    # signing keys
    async def load_keys(self) -> KeyMaterial | None:
        return await self._keys.get("signing")

    async def save_keys(self, material: KeyMaterial, ttl: float) -> None:
        await self._keys.put("signing", material, ttl)

    async def load_public_keys(self) -> PublicKeySet | None:
        return await self._public_keys.get("current")

    async def save_public_keys(self, keys: PublicKeySet, ttl: float) -> None:
        await self._public_keys.put("current", keys, ttl)


def store_from_url(url: str) -> AsyncKeyValue:
    """Build a store from a ``STORE_URL``; see :mod:`.store_backends` for the schemes."""
    from .store_backends import store_from_url as from_url

    return from_url(url)
