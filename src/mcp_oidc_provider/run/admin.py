"""``mcp-oidc-provider admin``: the :class:`~mcp_oidc_provider.admin.Admin` API on the configured store.

Configured like ``serve`` (``STORE_URL``, ``JWKS``, ... through :mod:`.env`)::

    mcp-oidc-provider admin grants --user SUB | --client ID
    mcp-oidc-provider admin revoke --user SUB | --client ID | --grant GID
    mcp-oidc-provider admin clients
    mcp-oidc-provider admin delete-client ID
    mcp-oidc-provider admin keys list | rotate | promote [--force] | retire KID [--force]

Tables for people, ``--json`` for scripts. Exit status: 0 done, 1 refused (the line says why),
2 configuration error (one line on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import anyio

from ..admin import Admin, AdminRefused, JwksConfigured
from ..core.errors import ConfigurationError
from ..store.backends import ensure_store_reachable, store_from_url
from ..store.repository import StoreCannotEnumerate
from .env import load_env_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of a table")
    commands = parser.add_subparsers(dest="admin_command", required=True)

    grants = commands.add_parser("grants", parents=[output], help="list the live grants of a user or of a client")
    who = grants.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="SUB", help="the user's subject at the upstream IdP")
    who.add_argument("--client", metavar="ID", help="a client id")

    revoke = commands.add_parser(
        "revoke", parents=[output], help="revoke grants (their access and refresh tokens stop working)"
    )
    what = revoke.add_mutually_exclusive_group(required=True)
    what.add_argument("--user", metavar="SUB", help="every grant of this user")
    what.add_argument("--client", metavar="ID", help="every grant of this client")
    what.add_argument("--grant", metavar="GID", help="one grant")

    commands.add_parser("clients", parents=[output], help="list registered clients")
    delete = commands.add_parser("delete-client", parents=[output], help="revoke a client's grants and delete it")
    delete.add_argument("client_id", metavar="ID")

    keys = commands.add_parser("keys", help="signing keys kept in the store: list and rotate")
    steps = keys.add_subparsers(dest="keys_command", required=True)
    steps.add_parser("list", parents=[output], help="the keys and where each is in its rotation")
    steps.add_parser("rotate", parents=[output], help="add a NEXT key: published and verifying, not signing yet")
    promote = steps.add_parser("promote", parents=[output], help="make the NEXT key sign; the old one still verifies")
    promote.add_argument("--force", action="store_true", help="do not wait for every server to know the key")
    retire = steps.add_parser("retire", parents=[output], help="drop a key that no longer signs")
    retire.add_argument("kid")
    retire.add_argument("--force", action="store_true", help="even while tokens it signed may be live")


def _when(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _grant_rows(grants: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "grant": g.grant_id,
            "client": g.client_id,
            "subject": g.subject,
            "scopes": " ".join(g.scopes),
            "resource": g.resource,
            "created": _when(g.created_at),
            "expires": _when(g.expires_at) if g.expires_at is not None else "(code not redeemed)",
        }
        for g in grants
    ]


_GRANT_COLUMNS = ("grant", "client", "subject", "scopes", "resource", "created", "expires")


async def _run(args: argparse.Namespace) -> tuple[Any, str]:
    """(JSON value, table text) of the command."""
    config = load_env_config()
    if config.store_url.startswith("memory:"):
        raise ConfigurationError(
            "STORE_URL is memory:// (or unset): admin acts on the servers' shared store; set STORE_URL to it"
        )
    store = store_from_url(config.store_url)
    settings = None
    if config.upstream_issuer is not None and config.upstream_client_id is not None:
        settings = config.provider_settings(
            config.upstream_issuer, config.upstream_client_id, config.upstream_client_secret
        )
    async with contextlib.AsyncExitStack() as stack:
        if hasattr(store, "__aenter__"):
            await stack.enter_async_context(store)  # type: ignore[arg-type]
        await ensure_store_reachable(store, config.store_url)
        admin = Admin(store, settings, jwks=config.jwks)
        command = args.admin_command
        if command == "grants":
            grants = await admin.grants(user=args.user, client=args.client)
            text = _table(_grant_rows(grants), _GRANT_COLUMNS) + f"\n{len(grants)} grant(s)"
            return [g.as_dict() for g in grants], text
        if command == "revoke":
            revoked = await admin.revoke(user=args.user, client=args.client, grant=args.grant)
            text = _table(_grant_rows(revoked), _GRANT_COLUMNS) + f"\nrevoked {len(revoked)} grant(s)"
            return {"revoked": [g.as_dict() for g in revoked]}, text
        if command == "clients":
            clients = await admin.clients()
            rows = [
                {
                    "client": c.client_id,
                    "name": c.client_name or "-",
                    "type": "confidential" if c.confidential else "public",
                    "redirect_uris": " ".join(c.redirect_uris),
                    "created": _when(c.created_at),
                }
                for c in clients
            ]
            text = _table(rows, ("client", "name", "type", "redirect_uris", "created")) + f"\n{len(clients)} client(s)"
            return [c.as_dict() for c in clients], text
        if command == "delete-client":
            deleted, revoked = await admin.delete_client(args.client_id)
            if not deleted and not revoked:
                raise AdminRefused(f"no registered client {args.client_id!r}")
            value = {"deleted": deleted, "revoked": [g.as_dict() for g in revoked]}
            return value, f"deleted client {args.client_id}; revoked {len(revoked)} grant(s)"
        step = args.keys_command
        if step == "rotate":
            key = await admin.rotate_keys()
            return key.as_dict(), f"added key {key.kid} as next: published, not signing; promote it after a while"
        if step == "promote":
            key = await admin.promote_key(force=args.force)
            return key.as_dict(), f"key {key.kid} signs now (servers switch within their key refresh interval)"
        if step == "retire":
            await admin.retire_key(args.kid, force=args.force)
            return {"retired": args.kid}, f"retired key {args.kid}"
        keys = await admin.keys()
        rows = [
            {
                "kid": k.kid,
                "alg": k.alg,
                "state": k.state,
                "since": _when(k.since),
                "retirable": _when(k.retirable_at),
            }
            for k in keys
        ]
        return [k.as_dict() for k in keys], _table(rows, ("kid", "alg", "state", "since", "retirable"))


def run(args: argparse.Namespace) -> int:
    # Audit events (grant.revoked, key.*) go to stderr like the servers' logs.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        value, text = anyio.run(_run, args)
    except (ConfigurationError, StoreCannotEnumerate, JwksConfigured) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AdminRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write((json.dumps(value, indent=2) if args.json else text) + "\n")
    return 0
