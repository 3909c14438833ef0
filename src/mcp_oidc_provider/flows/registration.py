"""Dynamic client registration, RFC 7591.

The SDK's handler parses the request, mints the client id and secret and checks scopes and
grant types; we add the redirect-URI policy (:mod:`..core.redirect_policy`), store the metadata with
an idle TTL renewed on use, and never store the secret: it is derived (see
:func:`..crypto.minting.derive_client_secret`) and handed back through the SDK's response object.

Bounded (issue 8 §4, MCP best practices "Bound Resource Usage"): only the metadata the server
uses is kept (:data:`STORED_METADATA`), within caps; anything else the client sent is dropped
from the record and from the response (RFC 7591 §3.2.1: the response echoes what is
registered). A registration lives ``unused_client_ttl`` until a code is redeemed
(:func:`mark_client_used`), then ``client_ttl``, renewed on use.
"""

from __future__ import annotations

from mcp.shared.auth import OAuthClientInformationFull

from ..cimd import CimdError, clean_display_text, is_client_id_url
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


#: The registered metadata the server reads again; nothing else is stored (issue 8 §4).
STORED_METADATA = (
    "client_name",
    "redirect_uris",
    "grant_types",
    "response_types",
    "token_endpoint_auth_method",
    "scope",
    "application_type",
    "client_id_issued_at",
)
#: RFC 7591 §2 metadata we neither store nor echo: we never show or fetch any of it.
DROPPED_METADATA = (
    "client_uri",
    "logo_uri",
    "contacts",
    "tos_uri",
    "policy_uri",
    "jwks_uri",
    "jwks",
    "software_id",
    "software_version",
)
MAX_CLIENT_NAME = 100
MAX_REDIRECT_URIS = 10
MAX_REDIRECT_URI_LENGTH = 2000
MAX_SCOPE_LENGTH = 1000
SUPPORTED_GRANT_TYPES = ("authorization_code", "refresh_token")
SUPPORTED_RESPONSE_TYPES = ("code",)


def bound_metadata(client: OAuthClientInformationFull) -> None:
    """Cap and trim the SDK's client object in place, so the record and the response agree.

    Over a cap: RFC 7591 §3.2.2 ``invalid_redirect_uri`` / ``invalid_client_metadata``. Grant
    and response types we do not offer are dropped (RFC 7591 §2: the server MAY replace
    requested values), so a long list of them stores nothing."""
    uris = client.redirect_uris or []
    if len(uris) > MAX_REDIRECT_URIS:
        raise registration_error("invalid_redirect_uri", f"at most {MAX_REDIRECT_URIS} redirect_uris")
    if any(len(str(uri)) > MAX_REDIRECT_URI_LENGTH for uri in uris):
        raise registration_error("invalid_redirect_uri", f"a redirect URI is longer than {MAX_REDIRECT_URI_LENGTH}")
    if client.scope is not None and len(client.scope) > MAX_SCOPE_LENGTH:
        raise registration_error("invalid_client_metadata", f"scope is longer than {MAX_SCOPE_LENGTH} characters")
    if client.client_name is not None:
        # Bidi overrides and control characters could disguise the name on the consent page.
        name = clean_display_text(client.client_name, max_length=MAX_CLIENT_NAME + 1)
        if len(name) > MAX_CLIENT_NAME:
            raise registration_error("invalid_client_metadata", f"client_name is longer than {MAX_CLIENT_NAME}")
        client.client_name = name or None
    client.grant_types = [g for g in SUPPORTED_GRANT_TYPES if g in set(client.grant_types)]
    client.response_types = [r for r in SUPPORTED_RESPONSE_TYPES if r in set(client.response_types)]
    for key in DROPPED_METADATA:
        setattr(client, key, None)


def stored_metadata(client: OAuthClientInformationFull) -> dict[str, object]:
    dumped = client.model_dump(mode="json", exclude_none=True)
    return {key: dumped[key] for key in STORED_METADATA if key in dumped}


async def register_client(ctx: Context, client: OAuthClientInformationFull) -> None:
    bound_metadata(client)
    ensure_redirect_uris_allowed(ctx, client)
    has_secret = issue_derived_secret(ctx, client)
    record = ClientRecord(metadata=stored_metadata(client), has_secret=has_secret, used=False)
    ttl = min(ctx.settings.unused_client_ttl, ctx.settings.client_ttl)
    await ctx.repo.save_client(client.client_id or "", record, ttl)
    audit.emit("client.registered", client_id=client.client_id)


async def mark_client_used(ctx: Context, client_id: str) -> None:
    """A redeemed code: the registration now gets its full ``client_ttl`` (issue 8 §4)."""
    found = await ctx.repo.load_client_with_ttl(client_id)
    if found is None or found[0].used:
        return
    await ctx.repo.save_client(client_id, found[0].model_copy(update={"used": True}), ctx.settings.client_ttl)


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
    # An unused registration is not renewed: it expires ``unused_client_ttl`` after registering.
    if record.used and remaining is not None and remaining < ctx.settings.client_ttl * RENEW_BELOW:
        await ctx.repo.save_client(client_id, record, ctx.settings.client_ttl)
    data = {"client_id": client_id, **record.metadata}
    if record.has_secret:
        data["client_secret"] = derive_client_secret(
            ctx.keys.secret, client_id, int(data.get("client_id_issued_at") or 0)
        )
    return FederatedClient.model_validate(data)
