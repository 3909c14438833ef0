"""The access-token checks both verifiers share, their per-process cache, and their fail-closed policy.

RFC 9068 §4 (and RFC 8725): the signature with one of the authorization server's keys (done by
the caller, who owns the keys), ``typ`` is ``at+jwt``, then here: ``iss`` is the authorization
server, ``aud`` is one of the MCP servers we guard (RFC 8707 §2), ``exp`` and ``nbf`` hold, and
the grant behind the token is still live (revocation, RFC 7009 §2).

Issue 12, the cache (:class:`BearerCache`). Everything in a verified token is immutable, and so
is its grant (subject, client, scopes, resource, mapped claims, absolute end): the grant is
written when the login completes and never rewritten. The one thing that changes is whether the
grant is still *live*: revocation (RFC 7009 §2 lets a revocation take "a short time" to reach
every resource server; RFC 9068 §4 leaves the check beyond the JWT's own claims to the resource
server's policy). So a token seen before is answered from memory, checking only ``exp``/``nbf``
and the grant's absolute end against the clock, and liveness is kept bounded this way:

- in the process that revokes, at once: :meth:`..store.repository.Repository.revoke_grant`
  tells every cache of the process (:func:`..store.repository.listen_for_revocations`), right
  after writing the tombstone; a fill that read the grant before that cannot land afterwards
  (the cache's generation changed while it read);
- in every other process within ``revocation_propagation_seconds``: ``revoke_grant`` changes a
  revocation *epoch* record after the tombstone; each cache reads it at most once per interval,
  lazily, on the first request after the interval (concurrent requests wait for that one read),
  and forgets everything when it changed. A request served from memory at time t was preceded
  by an epoch read that started after t - interval, and any revocation whose epoch that read
  saw has cleared the cache, so a grant revoked before t - interval is never served. The next
  read of a forgotten grant goes to the store, which has the tombstone: nothing is resurrected;
- never past the grant: an entry holds the grant's absolute end (``expires_at``, the store's
  remaining TTL, ``grant_max_lifetime`` after its creation where known) and the token's ``exp``.

``revocation_propagation_seconds=0`` turns the cache off: the grant is read on every request.
If the epoch cannot be read (store outage), the token is refused as an outage (503 at the
edge), even when the cache could answer: we cannot know whether a revocation was missed.

Fail closed: any unexpected failure refuses the token, names only the exception type in the
log and, for a store outage, reports it so the HTTP edge answers 503 rather than 401.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from .core.clock import CLOCK_SKEW_SECONDS
from .core.models import FederatedAccessToken
from .crypto.keys import InvalidJWT, SigningKeys
from .crypto.minting import ACCESS_TOKEN_TYP
from .store.failures import is_store_failure, report_store_outage
from .store.repository import Repository, listen_for_revocations

logger = logging.getLogger("mcp_oidc_provider.bearer")

DEFAULT_CACHE_SIZE = 10_000


def check_access_token_claims(claims: dict[str, object], issuer: str, audiences: tuple[str, ...], now: float) -> bool:
    """RFC 9068 §4: issuer, audience, expiry; plus the claims we rely on."""
    exp, nbf, iss = claims.get("exp"), claims.get("nbf", claims.get("iat")), claims.get("iss")
    return (
        isinstance(iss, str)
        and iss.rstrip("/") == issuer.rstrip("/")
        and claims.get("aud") in audiences
        and isinstance(exp, int)
        and exp > now
        and (not isinstance(nbf, int) or nbf <= now + CLOCK_SKEW_SECONDS)
        and isinstance(claims.get("sub"), str)
        and isinstance(claims.get("client_id"), str)
        and isinstance(claims.get("gid"), str)
    )


async def access_token_from_claims(repo: Repository, token: str, claims: dict[str, Any]) -> FederatedAccessToken | None:
    """The SDK's view of a verified token, if its grant is still live (RFC 7009 §2): present,
    not expired and not tombstoned (:meth:`.store.repository.Repository.load_grant`). Read on
    every call: this is the uncached path (``revocation_propagation_seconds=0``)."""
    grant = await repo.load_live_grant(str(claims["gid"]))
    if grant is None or grant.client_id != claims["client_id"]:
        return None
    return _build(token, claims, grant.claims, str(claims["gid"]))


def _build(token: str, claims: dict[str, Any], grant_claims: dict[str, Any], grant_id: str) -> FederatedAccessToken:
    scope = claims.get("scope")
    # Built per request (about 2 µs): the SDK and tools get their own object and lists.
    return FederatedAccessToken(
        token=token,
        client_id=str(claims["client_id"]),
        scopes=scope.split() if isinstance(scope, str) else [],
        expires_at=int(claims["exp"]),
        resource=str(claims["aud"]),
        subject=str(claims["sub"]),
        claims={**grant_claims, **claims},
        grant_id=grant_id,
    )


@dataclass(slots=True)
class _Grant:
    client_id: str
    claims: dict[str, Any]
    #: Absolute end (epoch seconds): never served past it.
    not_after: float


@dataclass(slots=True)
class _Token:
    claims: dict[str, Any]
    grant_id: str
    grant_claims: dict[str, Any]
    nbf: float
    #: min(token exp, grant's absolute end).
    not_after: float


class BearerCache:
    """Per-process memory of verified tokens and live grants (see the module docstring).

    ``grant_lifetime``: the provider's ``grant_max_lifetime``, a further bound on grants whose
    record predates ``expires_at``; a verifier does not know it and relies on the record's TTL.
    """

    def __init__(
        self,
        repo: Repository,
        *,
        propagation_seconds: float,
        size: int = DEFAULT_CACHE_SIZE,
        grant_lifetime: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repo = repo
        self.interval = propagation_seconds
        self._size = size
        self._grant_lifetime = grant_lifetime
        self._monotonic = monotonic
        self._tokens: OrderedDict[str, _Token] = OrderedDict()
        self._grants: OrderedDict[str, _Grant] = OrderedDict()
        #: Bumped by every forget: a fill whose store read straddles one is not kept.
        self._generation = 0
        self._epoch: object = object()  # matches no stored value: the first read clears
        self._epoch_read_at = float("-inf")
        self._epoch_lock = anyio.Lock()
        if self.enabled:
            listen_for_revocations(self)

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def forget_grant(self, grant_id: str) -> None:
        """A revocation in this process (called by ``Repository.revoke_grant``)."""
        self._generation += 1
        self._grants.pop(grant_id, None)

    def forget_tokens(self) -> None:
        """Signature verdicts are void (a signing key was retired): keep only the grants."""
        self._generation += 1
        self._tokens.clear()

    def clear(self) -> None:
        self._generation += 1
        self._tokens.clear()
        self._grants.clear()

    async def ready(self) -> None:
        """Read the revocation epoch if the last read is older than the interval; forget
        everything if it changed. Raises on a store failure (the caller refuses the token)."""
        if self._monotonic() - self._epoch_read_at < self.interval:
            return
        async with self._epoch_lock:
            started = self._monotonic()
            if started - self._epoch_read_at < self.interval:
                return  # a concurrent request just read it
            epoch = await self._repo.revocation_epoch()
            if epoch != self._epoch:
                self.clear()
                self._epoch = epoch
            self._epoch_read_at = started

    def hit(self, token: str, now: float) -> FederatedAccessToken | None:
        """A token seen before, its grant still cached, within its times; else None (look it up)."""
        entry = self._tokens.get(token)
        if entry is None:
            return None
        if entry.grant_id not in self._grants or not (entry.nbf <= now + CLOCK_SKEW_SECONDS and now < entry.not_after):
            del self._tokens[token]
            return None
        self._tokens.move_to_end(token)
        return _build(token, entry.claims, entry.grant_claims, entry.grant_id)

    async def admit(
        self, token: str, claims: dict[str, Any], *, issuer: str, audiences: tuple[str, ...], now: float
    ) -> FederatedAccessToken | None:
        """A token whose signature checked out: the claim checks, then its grant from memory or
        the store, remembered for next time."""
        if not check_access_token_claims(claims, issuer, audiences, now):
            return None
        grant_id = str(claims["gid"])
        grant = self._grants.get(grant_id)
        if grant is None or now >= grant.not_after:
            generation = self._generation
            live = await self._repo.load_live_grant(grant_id)
            if live is None:
                return None
            ends = [now + live.remaining] if live.remaining is not None else []
            if live.expires_at is not None:
                ends.append(live.expires_at)
            if self._grant_lifetime is not None:
                ends.append(live.created_at + self._grant_lifetime)
            grant = _Grant(live.client_id, dict(live.claims), min(ends, default=float("inf")))
            if generation == self._generation:
                self._grants[grant_id] = grant
                if len(self._grants) > self._size:
                    self._grants.popitem(last=False)
        if grant.client_id != claims["client_id"] or now >= grant.not_after:
            return None
        nbf = claims.get("nbf", claims.get("iat"))
        entry = _Token(
            claims=claims,
            grant_id=grant_id,
            grant_claims=grant.claims,
            nbf=float(nbf) if isinstance(nbf, int) else float("-inf"),
            not_after=min(float(claims["exp"]), grant.not_after),
        )
        if self._grants.get(grant_id) is grant:
            self._tokens[token] = entry
            if len(self._tokens) > self._size:
                self._tokens.popitem(last=False)
        return _build(token, claims, grant.claims, grant_id)


def refuse_after_failure(exc: BaseException) -> None:
    """Fail closed: the token is refused; a store outage is reported (503 at the edge), and
    nothing but the exception's type reaches the log."""
    logger.error("bearer check failed, token refused: %s", type(exc).__name__)
    if is_store_failure(exc):
        report_store_outage()


async def verify_access_token(
    keys: SigningKeys,
    repo: Repository,
    token: str,
    *,
    issuer: str,
    audiences: tuple[str, ...],
    now: float,
    cache: BearerCache | None = None,
) -> FederatedAccessToken | None:
    """The whole check with our own keys (integrated mode)."""
    if cache is not None and cache.enabled:
        await cache.ready()
        found = cache.hit(token, now)
        if found is not None:
            return found
    try:
        claims = keys.verify(token, ACCESS_TOKEN_TYP)
    except InvalidJWT:
        return None
    if cache is not None and cache.enabled:
        return await cache.admit(token, claims, issuer=issuer, audiences=audiences, now=now)
    if not check_access_token_claims(claims, issuer, audiences, now):
        return None
    return await access_token_from_claims(repo, token, claims)
