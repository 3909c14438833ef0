"""Where our signing keys come from: configuration, else the shared store.

Keys come, in this order of preference, from a configured JWKS (``JWKS``, as printed by
``mcp-oidc-provider keygen``) or the store: without one, the first process generates a key and
keeps it there, so a restart on a persistent store and every replica on a shared store sign and
verify with the same key.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

import anyio

from ..crypto.keys import Alg, SigningKeys, generate_jwks
from .records import KeyMaterial, PublicKeySet
from .repository import Repository

KEY_RECORD_TTL = 400 * 86400


#: Replicas starting together on an empty store all write; after this pause each re-reads and
#: adopts what is stored. Writes follow their empty read by one round trip (the key is made
#: before the read), so they all land well inside the pause and every replica converges.
CONVERGENCE_PAUSE_SECONDS = 0.5


async def _create_key_material(
    repo: Repository, stored: KeyMaterial | None, jwks: Mapping[str, Any] | None, secret: bytes | None, alg: Alg
) -> KeyMaterial:
    candidate = KeyMaterial(
        # Configured keys never go into the store: a configured JWKS is replaced by an empty
        # set, a configured SECRET_KEY by a random seed that is then not used.
        jwks={"keys": []} if jwks is not None else generate_jwks(alg),
        secret=stored.secret if stored is not None else base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    )
    current = await repo.load_keys()
    if current is not None and (jwks is not None or current.jwks.get("keys")):
        return current
    await repo.save_keys(candidate, KEY_RECORD_TTL)
    await anyio.sleep(CONVERGENCE_PAUSE_SECONDS)
    return await repo.load_keys() or candidate


async def load_signing_keys(
    repo: Repository, jwks: Mapping[str, Any] | None, secret: bytes | None, alg: Alg
) -> SigningKeys:
    """Configured keys if given, else the store's, else new ones written to the store.

    Two processes starting at once on an empty store may both write; each re-reads after its
    write and adopts what is stored, so they converge on the last writer's key.
    """
    stored = await repo.load_keys()
    if jwks is not None and secret is not None:
        keys = SigningKeys(jwks, secret)
        await repo.save_public_keys(PublicKeySet(jwks=keys.public_jwks()), KEY_RECORD_TTL)
        return keys
    if stored is None or (jwks is None and not stored.jwks.get("keys")):
        stored = await _create_key_material(repo, stored, jwks, secret, alg)
    else:
        await repo.save_keys(stored, KEY_RECORD_TTL)  # renew the TTL on every start
    seed = secret or base64.urlsafe_b64decode(stored.secret)
    keys = SigningKeys(jwks if jwks is not None else stored.jwks, seed)
    await repo.save_public_keys(PublicKeySet(jwks=keys.public_jwks()), KEY_RECORD_TTL)
    return keys


async def refresh_signing_keys(repo: Repository, keys: SigningKeys) -> bool:
    """Adopt the store's key set if an admin rotated it (issue 10 item 5); True if it changed.

    Only for keys kept in the store: a configured JWKS is the operator's to rotate. The
    rotation steps (``mcp-oidc-provider admin keys``) wait for every process to have done this
    once before the next step, so a key signs only once every process verifies with it.
    """
    stored = await repo.load_keys()
    if stored is None or not stored.jwks.get("keys"):
        return False
    fresh = SigningKeys(stored.jwks, keys.secret)
    if fresh.kids == keys.kids:
        return False
    keys.adopt(fresh)
    return True
