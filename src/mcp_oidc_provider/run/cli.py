"""``mcp-oidc-provider``: ``keygen`` prints a private JWKS for the ``JWKS`` variable; ``secrets``
prints ``SECRET_KEY`` and ``ENCRYPTION_KEYS`` values; ``serve [--config FILE]`` runs the
standalone authorization server (see :mod:`.standalone`; ``serve --help`` lists every variable)."""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import sys
from collections.abc import Sequence

from ..crypto.keys import generate_jwks
from ..crypto.sealing import new_encryption_key
from .env import provider_variables, variables_help
from .launch import add_config_argument
from .standalone import DEFAULT_PORT


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcp-oidc-provider")
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="print a new private JWKS (JSON) for the JWKS variable")
    keygen.add_argument("--pretty", action="store_true", help="indent the JSON (avoid in environment variables)")
    keygen.add_argument("--alg", choices=["RS256", "ES256"], default="RS256")
    commands.add_parser(
        "secrets",
        help="print new SECRET_KEY and ENCRYPTION_KEYS values (shell assignments)",
    )
    serve = commands.add_parser(
        "serve",
        help="run the authorization server alone (proxy mode), configured from the environment or --config",
        description="Run the authorization server alone (proxy mode). A bad setting: one line on stderr, exit 2.",
        epilog=variables_help(provider_variables(), DEFAULT_PORT),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_argument(serve)
    doctor = commands.add_parser(
        "doctor", help="check that the configured upstream IdP offers what this package needs (exit 1: problems)"
    )
    from .doctor import add_arguments as doctor_arguments

    doctor_arguments(doctor)
    admin = commands.add_parser("admin", help="list and revoke grants, list and delete clients, rotate signing keys")
    from .admin import add_arguments as admin_arguments

    admin_arguments(admin)
    args = parser.parse_args(argv)
    if args.command == "admin":
        from .admin import run as admin_run

        return admin_run(args)
    if args.command == "doctor":
        from .doctor import run as doctor_run

        return doctor_run(args)
    if args.command == "serve":
        from .standalone import main as serve_main

        return serve_main(args.config)
    if args.command == "secrets":
        sys.stdout.write(f"SECRET_KEY={base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip('=')}\n")
        sys.stdout.write(f"ENCRYPTION_KEYS={new_encryption_key()}\n")
        return 0
    if args.command == "keygen":
        jwks = generate_jwks(args.alg)
        sys.stdout.write(
            json.dumps(jwks, indent=2 if args.pretty else None, separators=None if args.pretty else (",", ":"))
        )
        sys.stdout.write("\n")
        return 0
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
