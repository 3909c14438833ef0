"""Administration on the shared store: who has access, take it away, clients, key rotation.

``Admin(store, settings)`` acts on the store the servers use (issue 10 item 5); the CLI
``mcp-oidc-provider admin`` is a thin shell around it (:mod:`.run.admin`).

- :meth:`Admin.grants` lists a user's or a client's grants from the per-user and per-client
  indexes written at login; every entry is checked against the grant itself, so a grant that
  expired or was revoked elsewhere is never listed (and its stale entry is dropped).
- :meth:`Admin.revoke` goes through :meth:`.store.repository.Repository.revoke_grant`, the
  provider's own revocation (tombstone, then delete; RFC 7009 §2.1): the audit log says
  ``grant.revoked`` and every verifier refuses the grant's tokens on its next request.
- :meth:`Admin.clients` and :meth:`Admin.delete_client` cover dynamically registered clients
  (RFC 7591); deleting a client revokes its grants first.
- Signing keys kept in the store rotate in three steps, each seen by every server within
  ``key_refresh_seconds``: :meth:`Admin.rotate_keys` publishes a NEXT key (in /jwks and the
  public-key record, verifying everywhere, signing nowhere); :meth:`Admin.promote_key` makes it
  sign (the old key still verifies); :meth:`Admin.retire_key` drops the old key once no token it
  signed can be live (``access_token_ttl`` after it stopped signing). A configured ``JWKS`` is
  the operator's to rotate: every key step refuses then.

Nothing here needs the sealing keys: the fields listed are the grant's unsealed ones.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from key_value.aio.protocols import AsyncKeyValue

from .core import audit
from .core.clock import Clock, SystemClock
from .core.settings import ProviderSettings
from .crypto.keys import SigningKeys, generate_jwks
from .store.records import KeyMaterial, KeyRotation, PublicKeySet, RotatingKey, StoredGrant
from .store.repository import Repository, StoreCannotEnumerate
from .store.signing_keys import KEY_RECORD_TTL

__all__ = ["Admin", "AdminRefused", "ClientInfo", "GrantInfo", "KeyInfo", "StoreCannotEnumerate"]

logger = logging.getLogger("mcp_oidc_provider.admin")


class AdminRefused(Exception):
    """The operation would break something (or cannot apply); the message says why and what to do."""


class JwksConfigured(AdminRefused):
    """The signing keys come from configuration, not from the store."""


@dataclass(frozen=True)
class GrantInfo:
    grant_id: str
    client_id: str
    subject: str
    scopes: list[str]
    resource: str
    created_at: float
    #: None while the login's code is not redeemed (the grant then lives as long as the code).
    expires_at: float | None

    @classmethod
    def of(cls, stored: StoredGrant) -> GrantInfo:
        return cls(
            grant_id=stored.grant_id,
            client_id=stored.client_id,
            subject=stored.subject,
            scopes=list(stored.scopes),
            resource=stored.resource,
            created_at=stored.created_at,
            expires_at=stored.expires_at,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClientInfo:
    client_id: str
    client_name: str | None
    redirect_uris: list[str]
    created_at: float | None
    confidential: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    alg: str
    #: ``signing``, ``next`` (published, not signing yet), ``retiring`` (stopped signing) or
    #: ``verifying`` (verifies, no rotation record).
    state: str
    since: float | None
    #: For a ``retiring`` key: from when :meth:`Admin.retire_key` accepts it without ``force``.
    retirable_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Durations:
    access_token_ttl: float
    tombstone_ttl: float
    key_refresh_seconds: float
    signing_alg: str | None

    @classmethod
    def of(cls, settings: ProviderSettings | None) -> _Durations:
        if settings is not None:
            return cls(
                settings.access_token_ttl, settings.tombstone_ttl, settings.key_refresh_seconds, settings.signing_alg
            )
        fields = ProviderSettings.model_fields

        def default(name: str) -> Any:
            return fields[name].default

        tombstone = max(default("refresh_token_ttl"), default("grant_max_lifetime")) + 86400 + 3600
        return cls(default("access_token_ttl"), tombstone, default("key_refresh_seconds"), None)


class Admin:
    """Operations on the store the servers share (see the module docstring).

    ``settings``: the servers' settings, for the lifetimes (access tokens, tombstones, key
    refresh); without them the defaults apply. ``jwks``: the configured ``JWKS`` if any (the key
    operations then refuse: rotate it in configuration).
    """

    def __init__(
        self,
        store: AsyncKeyValue,
        settings: ProviderSettings | None = None,
        *,
        jwks: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._repo = Repository(store)
        self._durations = _Durations.of(settings)
        self._jwks_configured = jwks is not None
        self._clock = clock or SystemClock()

    # grants

    async def grants(self, *, user: str | None = None, client: str | None = None) -> list[GrantInfo]:
        """The live grants of one user (the upstream ``sub``) or of one client, oldest first."""
        if (user is None) == (client is None):
            raise ValueError("give exactly one of user= or client=")
        ids = (
            await self._repo.grant_ids_of_subject(user)
            if user is not None
            else await self._repo.grant_ids_of_client(client or "")
        )
        found: list[GrantInfo] = []
        for grant_id in ids:
            stored = await self._repo.load_stored_grant(grant_id)
            if (
                stored is None
                or (user is not None and stored.subject != user)
                or (client is not None and stored.client_id != client)
            ):
                # Expired, revoked elsewhere (RFC 7009 /revoke, reuse detection) or never redeemed.
                await self._repo.unindex_grant(grant_id, user, client)
                continue
            found.append(GrantInfo.of(stored))
        return sorted(found, key=lambda g: (g.created_at, g.grant_id))

    async def revoke(
        self, *, user: str | None = None, client: str | None = None, grant: str | None = None
    ) -> list[GrantInfo]:
        """Revoke every grant of a user, of a client, or one grant; returns what was live."""
        if sum(x is not None for x in (user, client, grant)) != 1:
            raise ValueError("give exactly one of user=, client= or grant=")
        if grant is not None:
            stored = await self._repo.load_stored_grant(grant)
            targets = [GrantInfo.of(stored)] if stored is not None else []
            if not targets:
                # Tombstone it anyway: a grant whose record is gone must not come back either.
                await self._repo.revoke_grant(grant, self._durations.tombstone_ttl, self._clock.now())
        else:
            targets = await self.grants(user=user, client=client)
        revoked: list[GrantInfo] = []
        for info in targets:
            # The provider's own revocation (RFC 7009 §2.1): tombstone first, then delete.
            if await self._repo.revoke_grant(info.grant_id, self._durations.tombstone_ttl, self._clock.now()):
                audit.emit(
                    "grant.revoked",
                    client_id=info.client_id,
                    grant_id=info.grant_id,
                    subject=info.subject,
                    reason="admin",
                )
                revoked.append(info)
            await self._repo.unindex_grant(info.grant_id, info.subject, info.client_id)
        return revoked

    # clients

    async def clients(self) -> list[ClientInfo]:
        """Dynamically registered clients (RFC 7591) in the store; configured ones are not listed."""
        found: list[ClientInfo] = []
        for client_id in await self._repo.client_ids():
            record = await self._repo.load_client(client_id)
            if record is None:
                continue
            meta = record.metadata
            issued = meta.get("client_id_issued_at")
            found.append(
                ClientInfo(
                    client_id=client_id,
                    client_name=meta.get("client_name") if isinstance(meta.get("client_name"), str) else None,
                    redirect_uris=[str(u) for u in meta.get("redirect_uris") or []],
                    created_at=float(issued) if isinstance(issued, (int, float)) else None,
                    confidential=record.has_secret,
                )
            )
        return sorted(found, key=lambda c: (c.created_at or 0, c.client_id))

    async def delete_client(self, client_id: str) -> tuple[bool, list[GrantInfo]]:
        """Revoke the client's grants, then delete its registration: (was registered, revoked)."""
        revoked = await self.revoke(client=client_id)
        deleted = await self._repo.delete_client(client_id)
        if deleted:
            audit.emit("client.deleted", client_id=client_id, reason="admin")
        return deleted, revoked

    # signing keys

    async def _material(self) -> tuple[KeyMaterial, KeyRotation]:
        if self._jwks_configured:
            raise JwksConfigured(
                "the signing keys come from the JWKS variable, not the store: rotate them there "
                "(add a key from `mcp-oidc-provider keygen` second, restart; move it first, restart; "
                "remove the old one after the access-token lifetime)"
            )
        material = await self._repo.load_keys()
        if material is None or not material.jwks.get("keys"):
            raise AdminRefused("the store holds no signing keys yet: start the authorization server once")
        return material, await self._repo.load_key_rotation()

    async def _save(self, material: KeyMaterial, rotation: KeyRotation) -> None:
        keys = SigningKeys(material.jwks, base64.urlsafe_b64decode(material.secret))
        await self._repo.save_keys(material, KEY_RECORD_TTL)
        # The public-key record is what proxy-mode verifiers read on an unknown kid.
        await self._repo.save_public_keys(PublicKeySet(jwks=keys.public_jwks()), KEY_RECORD_TTL)
        await self._repo.save_key_rotation(rotation, KEY_RECORD_TTL)

    async def keys(self) -> list[KeyInfo]:
        material, rotation = await self._material()
        found: list[KeyInfo] = []
        for index, jwk in enumerate(material.jwks["keys"]):
            kid = str(jwk.get("kid"))
            entry = rotation.keys.get(kid)
            if index == 0:
                state, since = "signing", None
            elif entry is not None:
                state, since = entry.state, entry.since
            else:
                state, since = "verifying", None
            retirable = self._retirable_at(entry) if state == "retiring" and entry is not None else None
            found.append(KeyInfo(kid=kid, alg=str(jwk.get("alg")), state=state, since=since, retirable_at=retirable))
        return found

    def _retirable_at(self, entry: RotatingKey) -> float:
        # Servers may sign with the old key until they re-read the store; its last token then
        # lives access_token_ttl.
        return entry.since + self._durations.key_refresh_seconds + self._durations.access_token_ttl

    async def rotate_keys(self) -> KeyInfo:
        """Add a NEXT key: published and verifying everywhere, not signing yet."""
        material, rotation = await self._material()
        pending = [kid for kid, entry in rotation.keys.items() if entry.state == "next"]
        if pending:
            raise AdminRefused(f"key {pending[0]} is already next: promote it (or retire it) first")
        current = material.jwks["keys"][0]
        alg = self._durations.signing_alg or str(current.get("alg") or "RS256")
        new = generate_jwks("ES256" if alg == "ES256" else "RS256")["keys"][0]
        material = material.model_copy(update={"jwks": {**material.jwks, "keys": [*material.jwks["keys"], new]}})
        now = self._clock.now()
        rotation.keys[new["kid"]] = RotatingKey(state="next", since=now)
        await self._save(material, rotation)
        audit.emit("key.added", kid=new["kid"], reason="admin")
        return KeyInfo(kid=new["kid"], alg=new["alg"], state="next", since=now, retirable_at=None)

    async def promote_key(self, *, force: bool = False) -> KeyInfo:
        """Make the NEXT key sign; the old one keeps verifying until retired."""
        material, rotation = await self._material()
        pending = [kid for kid, entry in rotation.keys.items() if entry.state == "next"]
        if not pending:
            raise AdminRefused("no next key: run `keys rotate` first")
        kid, now = pending[0], self._clock.now()
        wait = rotation.keys[kid].since + self._durations.key_refresh_seconds - now
        if wait > 0 and not force:
            # A server that has not yet re-read the keys would refuse the new key's tokens.
            raise AdminRefused(
                f"key {kid} was published {now - rotation.keys[kid].since:.0f} s ago; servers re-read keys every "
                f"{self._durations.key_refresh_seconds:g} s: wait {wait:.0f} s (or force)"
            )
        keys = material.jwks["keys"]
        new = next(k for k in keys if k.get("kid") == kid)
        old_kid = str(keys[0].get("kid"))
        material = material.model_copy(
            update={"jwks": {**material.jwks, "keys": [new, *(k for k in keys if k.get("kid") != kid)]}}
        )
        del rotation.keys[kid]
        rotation.keys[old_kid] = RotatingKey(state="retiring", since=now)
        await self._save(material, rotation)
        audit.emit("key.promoted", kid=kid, reason="admin")
        return KeyInfo(kid=kid, alg=str(new.get("alg")), state="signing", since=now, retirable_at=None)

    async def retire_key(self, kid: str, *, force: bool = False) -> None:
        """Drop a key that no longer signs, once no token it signed can still be live."""
        material, rotation = await self._material()
        keys = material.jwks["keys"]
        if not any(k.get("kid") == kid for k in keys):
            raise AdminRefused(f"no key {kid!r} in the store (see `keys list`)")
        if keys[0].get("kid") == kid:
            raise AdminRefused(f"key {kid} signs: rotate and promote another key first")
        entry = rotation.keys.get(kid)
        now = self._clock.now()
        if entry is None and not force:
            raise AdminRefused(f"no record of when key {kid} stopped signing; force to retire it anyway")
        if entry is not None and entry.state == "retiring" and not force:
            ready = self._retirable_at(entry)
            if now < ready:
                raise AdminRefused(
                    f"tokens signed by {kid} may be live for {ready - now:.0f} s more (access-token lifetime); "
                    "wait (or force, refusing them now)"
                )
        material = material.model_copy(
            update={"jwks": {**material.jwks, "keys": [k for k in keys if k.get("kid") != kid]}}
        )
        rotation.keys.pop(kid, None)
        await self._save(material, rotation)
        audit.emit("key.retired", kid=kid, reason="admin")
