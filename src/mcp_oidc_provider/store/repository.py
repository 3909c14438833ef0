"""The typed store: the only code that knows collection names and keys.

Every record is a pydantic model with a schema version, kept in its own named collection of
any py-key-value-aio :class:`AsyncKeyValue`, always with a TTL. Codes, refresh tokens and login
``state`` values are bearer secrets, so they are never used as keys: a key is the SHA-256 of
the value, and the value itself is never stored (a dump of the store yields no usable token).

Single use is enforced by *claiming*: read the record, then ``delete()`` it and go on only if
``delete()`` returned True. Exactly one concurrent caller sees True, on the memory, disk and
Redis backends alike (py-key-value-aio has no get-and-delete or compare-and-set).

Revocation is a durable fact (issue 8 §1): :meth:`Repository.revoke_grant` writes a tombstone
*before* it deletes the grant, :meth:`Repository.load_grant` refuses a tombstoned grant, and
every write of a grant or of its upstream tokens checks the tombstone *after* writing and
undoes itself when it finds one (see :meth:`Repository._write_unless_revoked` for why no
interleaving then brings a revoked grant back).
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import weakref
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from key_value.aio.protocols import AsyncKeyValue

from ..core.models import UpstreamTokens
from ..crypto.sealing import Sealer, SealError
from .records import (
    ClientDocumentRecord,
    ClientRecord,
    CodeRecord,
    ConsentApproval,
    GrantIndexEntry,
    GrantRecord,
    KeyMaterial,
    KeyRotation,
    LoginApproval,
    LoginTransaction,
    PublicKeySet,
    Record,
    RefreshTokenRecord,
    RevocationEpoch,
    RevokedGrant,
    SealedPart,
    SpentMarker,
    StoredGrant,
    StoredUpstream,
    UpstreamLease,
    UpstreamLockToken,
)

#: Pre-created lock tokens per upstream generation: the first refresh attempt and two take-overs
#: after a holder vanished (crash) without writing the next generation.
UPSTREAM_LOCK_ATTEMPTS = 3

logger = logging.getLogger("mcp_oidc_provider.store")

NAMESPACE = "mcp-oidc"


def digest(value: str) -> str:
    """Storage key for a secret value: its SHA-256, hex."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


R = TypeVar("R", bound=Record)


class LiveGrant(NamedTuple):
    """What the bearer check needs of a live grant (issue 12): its immutable parts, and how
    long the store keeps it (``remaining`` seconds, None if no TTL)."""

    grant_id: str
    client_id: str
    subject: str
    scopes: list[str]
    resource: str
    claims: dict[str, Any]
    created_at: float
    expires_at: float | None
    remaining: float | None


class RevocationListener(Protocol):
    """An in-process cache of grants (the bearer caches of :mod:`..bearer`)."""

    def forget_grant(self, grant_id: str) -> None: ...


#: Every grant cache of this process. A revocation drops the grant from all of them, whatever
#: store they read: grant ids are random, so dropping one from a cache that never saw it is
#: harmless, and a provider and a verifier on two handles of one store both hear it.
_revocation_listeners: weakref.WeakSet[Any] = weakref.WeakSet()


def listen_for_revocations(listener: RevocationListener) -> None:
    """``listener.forget_grant(grant_id)`` runs in this process whenever a grant is revoked here."""
    _revocation_listeners.add(listener)


def _tell_listeners(grant_id: str) -> None:
    for listener in list(_revocation_listeners):
        listener.forget_grant(grant_id)


class Collection(Generic[R]):
    def __init__(self, kv: AsyncKeyValue, name: str, model: type[R]) -> None:
        self._kv = kv
        self._name = f"{NAMESPACE}-{name}"
        self._model = model

    @property
    def name(self) -> str:
        return self._name

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
        self._revoked = Collection(kv, "revoked-grants", RevokedGrant)
        self._revocation_epoch = Collection(kv, "revocation-epoch", RevocationEpoch)
        self._upstream = Collection(kv, "grant-upstream", StoredUpstream)
        self._upstream_locks = Collection(kv, "upstream-refresh-locks", UpstreamLockToken)
        self._upstream_leases = Collection(kv, "upstream-refresh-leases", UpstreamLease)
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
        part = SealedPart(claims=grant.claims)
        return StoredGrant(
            grant_id=grant.grant_id,
            client_id=grant.client_id,
            subject=grant.subject,
            scopes=grant.scopes,
            resource=grant.resource,
            created_at=grant.created_at,
            expires_at=grant.expires_at,
            sealed=self._sealer().seal(part.model_dump_json().encode()),
        )

    def _open_part(self, grant_id: str, sealed: str) -> SealedPart | None:
        # The bearer check opens the same grant on every request: keep recent plaintexts.
        part = self._opened.get(sealed)
        if part is None:
            try:
                part = SealedPart.model_validate_json(self._sealer().open(sealed))
            except SealError:
                logger.error(
                    "grant %s could not be decrypted: is ENCRYPTION_KEYS (or SECRET_KEY) the authorization "
                    "server's, and was no key retired too early?",
                    grant_id,
                )
                return None
            self._opened[sealed] = part
            if len(self._opened) > 1024:
                self._opened.pop(next(iter(self._opened)))
        return part

    def _open(self, stored: StoredGrant) -> GrantRecord | None:
        part = self._open_part(stored.grant_id, stored.sealed)
        if part is None:
            return None
        return GrantRecord(
            grant_id=stored.grant_id,
            client_id=stored.client_id,
            subject=stored.subject,
            scopes=stored.scopes,
            resource=stored.resource,
            created_at=stored.created_at,
            expires_at=stored.expires_at,
            claims=part.claims,
            upstream=part.upstream,  # schema-1 grants only
        )

    async def is_revoked(self, grant_id: str) -> bool:
        return await self._revoked.get(grant_id) is not None

    async def _write_unless_revoked(
        self, grant_id: str, collection: Collection[R], key: str, record: R, ttl: float
    ) -> bool:
        """Put, then check the tombstone, and delete what we put if there is one.

        Why this order cannot resurrect a revoked grant: revocation is (R1) put tombstone,
        (R2) delete; a writer is (W1) put, (W2) read tombstone, (W3) delete if found. Each store
        operation is atomic and the store is linearizable (one Redis, one process's memory or
        SQLite). If W2 misses the tombstone, W2 came before R1, so W1 < W2 < R1 < R2 and the
        revoker's delete removes our write. If W2 sees it, W3 removes our write. Either way
        nothing written survives the revocation; meanwhile every reader checks the tombstone
        (:meth:`load_grant`), so even the instant between W1 and W3 serves nothing. A writer
        that crashes between W1 and W3 leaves a record that no reader accepts and its TTL ends.
        The reverse order (check, then write) is the bug this replaces: the revocation can land
        between the check and the write.
        """
        await collection.put(key, record, ttl)
        if await self.is_revoked(grant_id):
            await collection.delete(key)
            logger.info("write to revoked grant %s undone", grant_id)
            return False
        return True

    async def save_grant(self, grant: GrantRecord, ttl: float, *, upstream_checked_at: float | None = None) -> bool:
        """Write the immutable grant and, if it has any, its upstream tokens (generation 0).

        Called when the login completes (TTL of the code) and once more when the code is
        redeemed (TTL up to ``expires_at``): before the redemption no token of the grant exists,
        so no upstream refresh can run concurrently with the second write. False if the grant
        was revoked (nothing stays written)."""
        if not await self._write_unless_revoked(grant.grant_id, self._grants, grant.grant_id, self._seal(grant), ttl):
            return False
        if grant.upstream is not None:
            checked_at = upstream_checked_at if upstream_checked_at is not None else grant.created_at
            return await self.save_upstream(grant.grant_id, grant.upstream, 0, checked_at, ttl)
        return True

    async def load_grant(self, grant_id: str) -> GrantRecord | None:
        """The grant, unless it expired or was revoked (tombstone checked after the read)."""
        stored = await self._grants.get(grant_id)
        if stored is None or await self.is_revoked(grant_id):
            return None
        return self._open(stored)

    async def load_grant_with_ttl(self, grant_id: str) -> tuple[GrantRecord, float | None] | None:
        found = await self._grants.get_with_ttl(grant_id)
        if found is None or await self.is_revoked(grant_id):
            return None
        grant = self._open(found[0])
        return (grant, found[1]) if grant is not None else None

    async def revoke_grant(self, grant_id: str, tombstone_ttl: float, now: float) -> bool:
        """Tombstone first, then delete (the order :meth:`_write_unless_revoked` relies on).
        True if this call removed a live grant record.

        Issue 12: after the tombstone (so whoever re-reads the grant sees it), this process's
        bearer caches drop the grant and the revocation epoch changes, which other processes
        poll (:meth:`revocation_epoch`). If the epoch write fails the call raises and the
        revocation answers an error, so the client retries it."""
        await self._revoked.put(grant_id, RevokedGrant(revoked_at=now), tombstone_ttl)
        _tell_listeners(grant_id)
        deleted = await self._grants.delete(grant_id)
        await self._upstream.delete(grant_id)
        epoch = RevocationEpoch(value=secrets.token_urlsafe(16), changed_at=now)
        await self._revocation_epoch.put("current", epoch, tombstone_ttl)
        return deleted

    async def load_live_grant(self, grant_id: str) -> LiveGrant | None:
        """:meth:`load_grant` for the bearer check, cheaper (issue 12): the grant record is
        validated once and not rebuilt as a :class:`GrantRecord`, the tombstone is only tested
        for presence, the upstream record is not read, and the store's remaining TTL comes with
        the same read. (Grant and tombstone live in two collections, so no single ``get_many``
        answers both.)"""
        found = await self._grants.get_with_ttl(grant_id)
        if found is None or await self.kv.get(grant_id, collection=self._revoked.name) is not None:
            return None
        stored, remaining = found
        part = self._open_part(grant_id, stored.sealed)
        if part is None:
            return None
        return LiveGrant(
            stored.grant_id,
            stored.client_id,
            stored.subject,
            stored.scopes,
            stored.resource,
            part.claims,
            stored.created_at,
            stored.expires_at,
            remaining,
        )

    async def revocation_epoch(self) -> str | None:
        """The value :meth:`revoke_grant` changes on every revocation (None before the first)."""
        record = await self._revocation_epoch.get("current")
        return record.value if record is not None else None

    async def grant_record_exists(self, grant_id: str) -> bool:
        """Whether any grant record is in the store, tombstone or not (for tests and audits)."""
        return await self._grants.get(grant_id) is not None

    # upstream tokens of a grant (issue 11 item 3)
    async def save_upstream(
        self, grant_id: str, tokens: UpstreamTokens, generation: int, checked_at: float, ttl: float
    ) -> bool:
        """Write generation ``generation`` of the grant's upstream tokens and create its lock
        tokens; False (and nothing kept) if the grant was revoked."""
        record = StoredUpstream(
            grant_id=grant_id,
            generation=generation,
            checked_at=checked_at,
            sealed=self._sealer().seal(tokens.model_dump_json().encode()),
        )
        for attempt in range(UPSTREAM_LOCK_ATTEMPTS):
            token = UpstreamLockToken(grant_id=grant_id, generation=generation, attempt=attempt)
            await self._upstream_locks.put(f"{grant_id}:{generation}:{attempt}", token, ttl)
        return await self._write_unless_revoked(grant_id, self._upstream, grant_id, record, ttl)

    async def load_upstream(self, grant_id: str) -> tuple[UpstreamTokens, StoredUpstream] | None:
        stored = await self._upstream.get(grant_id)
        if stored is None:
            return None
        try:
            tokens = UpstreamTokens.model_validate_json(self._sealer().open(stored.sealed))
        except SealError:
            logger.error("upstream tokens of grant %s could not be decrypted", grant_id)
            return None
        return tokens, stored

    async def load_grant_and_upstream(
        self, grant_id: str
    ) -> tuple[GrantRecord, StoredUpstream | None, float | None] | None:
        """The live grant with its upstream tokens, their record, and the grant's remaining TTL."""
        found = await self.load_grant_with_ttl(grant_id)
        if found is None:
            return None
        grant, remaining = found
        upstream = await self.load_upstream(grant_id)
        if upstream is None:
            return grant, None, remaining
        return grant.model_copy(update={"upstream": upstream[0]}), upstream[1], remaining

    async def claim_upstream_lock(self, grant_id: str, generation: int, attempt: int) -> bool:
        """Exactly one caller gets True per (generation, attempt): the token was created once,
        by the writer of that generation, and only ``delete()`` returning True wins it."""
        return await self._upstream_locks.delete(f"{grant_id}:{generation}:{attempt}")

    async def release_upstream_lock(self, grant_id: str, generation: int, attempt: int) -> None:
        """Put back a lock token its holder claimed (only the holder, only before its deadline)."""
        token = UpstreamLockToken(grant_id=grant_id, generation=generation, attempt=attempt)
        await self._upstream_locks.put(f"{grant_id}:{generation}:{attempt}", token, 3600)

    async def put_upstream_lease(self, grant_id: str, generation: int, attempt: int, deadline: float) -> None:
        # The record outlives its deadline: a waiter reads the deadline, not the record's presence.
        await self._upstream_leases.put(f"{grant_id}:{generation}:{attempt}", UpstreamLease(deadline=deadline), 3600)

    async def upstream_lease(self, grant_id: str, generation: int, attempt: int) -> UpstreamLease | None:
        return await self._upstream_leases.get(f"{grant_id}:{generation}:{attempt}")

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
    async def save_refresh_token(self, token: str, record: RefreshTokenRecord, ttl: float) -> bool:
        """False (and nothing kept) if the grant was revoked meanwhile."""
        return await self._write_unless_revoked(record.grant_id, self._refresh, digest(token), record, ttl)

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

    # issue 10 item 5: grants by user and by client, registered clients, key rotation (admin).
    # One collection per user (and per client), named by the SHA-256 of the id: listing one
    # user's grants is then one ``keys(collection)`` call, served by the backend's own index
    # (a Redis SCAN MATCH on the collection prefix, PostgreSQL's primary key, a dict in memory)
    # and bounded by that user's grants, not by everyone's. Entries live as long as the grant
    # can; a revocation elsewhere may leave one behind, so readers check the grant itself.

    def _grants_of_subject(self, subject: str) -> Collection[GrantIndexEntry]:
        return Collection(self.kv, f"grants-of-subject-{digest(subject)}", GrantIndexEntry)

    def _grants_of_client(self, client_id: str) -> Collection[GrantIndexEntry]:
        return Collection(self.kv, f"grants-of-client-{digest(client_id)}", GrantIndexEntry)

    async def _enumerate(self, collection: Collection[Any]) -> list[str]:
        keys = getattr(self.kv, "keys", None)
        if keys is None:
            raise StoreCannotEnumerate(
                f"the store ({type(self.kv).__name__}) cannot list keys; use memory://, disk://, redis:// "
                "or postgresql://"
            )
        return list(await keys(collection=collection._name))

    async def index_grant(self, grant: GrantRecord, ttl: float) -> None:
        entry = GrantIndexEntry(grant_id=grant.grant_id, created_at=grant.created_at)
        await self._grants_of_subject(grant.subject).put(grant.grant_id, entry, ttl)
        await self._grants_of_client(grant.client_id).put(grant.grant_id, entry, ttl)

    async def unindex_grant(self, grant_id: str, subject: str | None, client_id: str | None) -> None:
        if subject is not None:
            await self._grants_of_subject(subject).delete(grant_id)
        if client_id is not None:
            await self._grants_of_client(client_id).delete(grant_id)

    async def grant_ids_of_subject(self, subject: str) -> list[str]:
        return await self._enumerate(self._grants_of_subject(subject))

    async def grant_ids_of_client(self, client_id: str) -> list[str]:
        return await self._enumerate(self._grants_of_client(client_id))

    async def load_stored_grant(self, grant_id: str) -> StoredGrant | None:
        """The grant's public part (no sealer needed), unless it expired or was revoked."""
        stored = await self._grants.get(grant_id)
        if stored is None or await self.is_revoked(grant_id):
            return None
        return stored

    async def client_ids(self) -> list[str]:
        return await self._enumerate(self._clients)

    async def load_client(self, client_id: str) -> ClientRecord | None:
        return await self._clients.get(client_id)

    async def delete_client(self, client_id: str) -> bool:
        return await self._clients.delete(client_id)

    def _key_rotation(self) -> Collection[KeyRotation]:
        return Collection(self.kv, "key-rotation", KeyRotation)

    async def load_key_rotation(self) -> KeyRotation:
        return await self._key_rotation().get("signing") or KeyRotation()

    async def save_key_rotation(self, rotation: KeyRotation, ttl: float) -> None:
        await self._key_rotation().put("signing", rotation, ttl)


class StoreCannotEnumerate(Exception):
    """The configured store has no way to list the keys of a collection."""
