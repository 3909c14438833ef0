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

from ..crypto.sealing import Sealer, SealError
from .records import (
    ClientDocumentRecord,
    ClientRecord,
    CodeRecord,
    ConsentApproval,
    GrantRecord,
    KeyMaterial,
    LoginApproval,
    LoginTransaction,
    PublicKeySet,
    Record,
    RefreshTokenRecord,
    SealedPart,
    SpentMarker,
    StoredGrant,
)

logger = logging.getLogger("mcp_oidc_provider.store")

NAMESPACE = "mcp-oidc"


def digest(value: str) -> str:
    """Storage key for a secret value: its SHA-256, hex."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


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
        self._opened: dict[str, SealedPart] = {}
        self._codes = Collection(kv, "codes", CodeRecord)
        self._spent_codes = Collection(kv, "spent-codes", SpentMarker)
        self._refresh = Collection(kv, "refresh-tokens", RefreshTokenRecord)
        self._spent_refresh = Collection(kv, "spent-refresh-tokens", SpentMarker)
        self._keys = Collection(kv, "keys", KeyMaterial)
        self._public_keys = Collection(kv, "public-keys", PublicKeySet)
        self._client_documents = Collection(kv, "client-documents", ClientDocumentRecord)

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
        part = SealedPart(claims=grant.claims, upstream=grant.upstream)
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
                part = SealedPart.model_validate_json(self._sealer().open(stored.sealed))
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

    # client metadata documents (CIMD), keyed by the SHA-256 of their URL
    async def load_client_document(self, url_digest: str) -> dict[str, Any] | None:
        record = await self._client_documents.get(url_digest)
        return record.document if record is not None else None

    async def save_client_document(self, url_digest: str, document: dict[str, Any], ttl: float) -> None:
        await self._client_documents.put(url_digest, ClientDocumentRecord(document=document), ttl)

    # signing keys
    async def load_keys(self) -> KeyMaterial | None:
        return await self._keys.get("signing")

    async def save_keys(self, material: KeyMaterial, ttl: float) -> None:
        await self._keys.put("signing", material, ttl)

    async def load_public_keys(self) -> PublicKeySet | None:
        return await self._public_keys.get("current")

    async def save_public_keys(self, keys: PublicKeySet, ttl: float) -> None:
        await self._public_keys.put("current", keys, ttl)

    # issue 8 §2: remembered approvals and per-login approval markers
    def _consent_approvals(self) -> Collection[ConsentApproval]:
        return Collection(self.kv, "consent-approvals", ConsentApproval)

    def _login_approvals(self) -> Collection[LoginApproval]:
        return Collection(self.kv, "login-approvals", LoginApproval)

    async def save_consent_approval(self, key: str, record: ConsentApproval, ttl: float) -> None:
        await self._consent_approvals().put(key, record, ttl)

    async def load_consent_approval(self, key: str) -> ConsentApproval | None:
        return await self._consent_approvals().get(key)

    async def save_login_approval(self, state: str, record: LoginApproval, ttl: float) -> None:
        await self._login_approvals().put(digest(state), record, ttl)

    async def load_login_approval(self, state: str) -> LoginApproval | None:
        return await self._login_approvals().get(digest(state))

    async def delete_login_approval(self, state: str) -> bool:
        return await self._login_approvals().delete(digest(state))
