"""Dynamic client registration, RFC 7591.

The SDK's handler parses the request, mints the client id and secret and checks scopes and
grant types; we add the redirect-URI policy (:mod:`..core.redirect_policy`), store the metadata with
an idle TTL renewed on use, and never store the secret: it is derived (see
:func:`..crypto.minting.derive_client_secret`) and handed back through the SDK's response object.
"""

from __future__ import annotations

from mcp.shared.auth import OAuthClientInformationFull

from ..cimd import CimdError, is_client_id_url
from ..core import audit
from ..core.errors import registration_error
from ..core.models import FederatedClient
from ..core.redirect_policy import RedirectUriRefused, ensure_redirect_uri_allowed
from ..crypto.minting import derive_client_secret
from ..store.records import ClientRecord
from .context import Context

#: Renew a registration's TTL when less than this share of it is left, not on every request.
RENEW_BELOW = 0.9


def ensure_redirect_uris_allowed(ctx: Context, client: OAuthClientInformationFull) -> None:
    """RFC 7591 §2: the server decides which redirect URIs it accepts."""
    if not client.redirect_uris:
        raise registration_error("invalid_redirect_uri", "redirect_uris is required")
    application_type = getattr(client, "application_type", None)
    for uri in client.redirect_uris:
        try:
            ensure_redirect_uri_allowed(
                str(uri), ctx.settings.private_use_schemes, ctx.settings.allowed_redirect_hosts, application_type
            )
        except RedirectUriRefused as exc:
            raise registration_error("invalid_redirect_uri", str(exc)) from exc


def issue_derived_secret(ctx: Context, client: OAuthClientInformationFull) -> bool:
    """Replace the SDK-minted secret by one derived from our seed; the SDK returns this object."""
    if not client.client_secret:
        return False
    client.client_secret = derive_client_secret(
        ctx.keys.secret, client.client_id or "", client.client_id_issued_at or 0
    )
    return True


async def register_client(ctx: Context, client: OAuthClientInformationFull) -> None:
    ensure_redirect_uris_allowed(ctx, client)
    has_secret = issue_derived_secret(ctx, client)
    metadata = client.model_dump(mode="json", exclude={"client_secret"}, exclude_none=True)
    await ctx.repo.save_client(
        client.client_id or "", ClientRecord(metadata=metadata, has_secret=has_secret), ctx.settings.client_ttl
    )
    audit.emit("client.registered", client_id=client.client_id)


def static_client_info(ctx: Context, client_id: str) -> FederatedClient | None:
    """A client from configuration (``ProviderSettings.static_clients``), never from the store."""
    static = ctx.settings.static_client(client_id)
    if static is None:
        return None
    return FederatedClient.model_validate(
        {
            "client_id": static.client_id,
            "client_secret": static.client_secret.get_secret_value() if static.client_secret else None,
            "client_name": static.client_name,
            "redirect_uris": list(static.redirect_uris),
            "scope": " ".join(static.scopes if static.scopes is not None else ctx.settings.scopes),
            "token_endpoint_auth_method": static.token_endpoint_auth_method,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }
    )


async def resolve_metadata_document(ctx: Context, client_id: str) -> FederatedClient | None:
    """CIMD (draft-ietf-oauth-client-id-metadata-document §4-5): fetch, validate and cache the
    document the ``client_id`` URL names; any failure is "no such client" (an OAuth
    ``invalid_client`` at /token and /revoke, an error page at /authorize: RFC 6749 §4.1.2.1
    forbids redirecting for an invalid client), and nothing is stored for it."""
    if ctx.cimd is None:
        return None
    try:
        resolved = await ctx.cimd.resolve(client_id)
    except CimdError as exc:
        audit.emit("cimd.refused", reason=exc.reason)
        return None
    metadata = dict(resolved.metadata)
    # A document rarely names scopes; like a registration without any, it gets ours (RFC 7591 §2).
    metadata.setdefault("scope", " ".join(ctx.settings.scopes))
    return FederatedClient.model_validate(metadata)


async def load_client(ctx: Context, client_id: str) -> OAuthClientInformationFull | None:
    static = static_client_info(ctx, client_id)
    if static is not None:
        return static
    if is_client_id_url(client_id):
        return await resolve_metadata_document(ctx, client_id)
    found = await ctx.repo.load_client_with_ttl(client_id)
    if found is None:
        return None
    record, remaining = found
    if remaining is not None and remaining < ctx.settings.client_ttl * RENEW_BELOW:
        await ctx.repo.save_client(client_id, record, ctx.settings.client_ttl)
    data = dict(record.metadata)
    if record.has_secret:
        data["client_secret"] = derive_client_secret(
            ctx.keys.secret, client_id, int(data.get("client_id_issued_at") or 0)
        )
    return FederatedClient.model_validate(data)
