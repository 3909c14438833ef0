"""Every ``error_description`` the package can emit stays within RFC 6749 §4.1.2.1's character set
(%x20-21 / %x23-5B / %x5D-7E): printable ASCII without ``"`` and ``\\``.

The literals are found by reading the source with :mod:`ast`, so a new error written anywhere
in the package is checked without being listed here. Dynamic parts (``str(exc)``, an issuer)
are the job of :func:`core.errors.safe_description`, tested below on hostile input.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest

import mcp_oidc_provider
from mcp_oidc_provider.core.errors import (
    AccessDenied,
    InvalidTarget,
    UpstreamError,
    registration_error,
    safe_description,
    to_authorize_error,
    to_token_error,
)
from mcp_oidc_provider.flows.login import client_redirect
from mcp_oidc_provider.store.records import LoginTransaction
from mcp_oidc_provider.web.errors import error_response, send_error

pytestmark = pytest.mark.unit

PACKAGE = Path(mcp_oidc_provider.__file__).parent
CHARSET = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]*")

#: Exception classes whose first argument is a description a client may see, and every
#: subclass of them found in the source. RedirectUriRefused reaches /register via str(exc).
DESCRIPTION_EXCEPTION_ROOTS = frozenset(
    {"OIDCProviderError", "CimdError", "ConsentRefused", "UnknownLoginTransaction", "RedirectUriRefused"}
)
#: Functions that write a description: name -> (positional index, keyword name).
#: ConfigurationError is raised at start-up for the operator, never on a request (core/errors.py);
#: its messages may quote configuration syntax ('"keys" array').
OPERATOR_ONLY_EXCEPTIONS = frozenset({"ConfigurationError"})
DESCRIPTION_WRITERS = {
    "registration_error": (1, "text"),
    "send_error": (3, "description"),
    "error_response": (3, "description"),
}
DESCRIPTION_ATTRIBUTES = frozenset({"description", "default_description"})


@dataclass(frozen=True)
class Emitted:
    text: str
    where: str


def modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(PACKAGE.rglob("*.py"))]


def description_exceptions(trees: list[tuple[Path, ast.Module]]) -> set[str]:
    bases: dict[str, set[str]] = {}
    for _, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
    found = set(DESCRIPTION_EXCEPTION_ROOTS)
    while True:
        more = {name for name, parents in bases.items() if parents & found} - found - OPERATOR_ONLY_EXCEPTIONS
        if not more:
            return found
        found |= more


def literal_parts(node: ast.expr | None) -> list[str]:
    """The constant text of an expression that builds a string: literals, f-string constant
    parts, concatenations and both branches of a conditional."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return literal_parts(node.left) + literal_parts(node.right)
    if isinstance(node, ast.IfExp):
        return literal_parts(node.body) + literal_parts(node.orelse)
    if isinstance(node, ast.BoolOp):
        return [part for value in node.values for part in literal_parts(value)]
    return []


def callee(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def argument(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    return call.args[index] if len(call.args) > index else None


def emitted_descriptions() -> list[Emitted]:
    trees = modules()
    exceptions = description_exceptions(trees)
    found: list[Emitted] = []
    for path, tree in trees:
        rel = path.relative_to(PACKAGE.parent)
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', 0)}"
            nodes: list[ast.expr | None] = []
            if isinstance(node, ast.Call):
                name = callee(node)
                if name in exceptions:
                    nodes.append(argument(node, 0, "description"))
                if name in DESCRIPTION_WRITERS:
                    nodes.append(argument(node, *DESCRIPTION_WRITERS[name]))
                nodes += [kw.value for kw in node.keywords if kw.arg == "error_description"]
            elif isinstance(node, ast.ClassDef) and node.name in exceptions:
                for statement in node.body:
                    if isinstance(statement, ast.Assign):
                        targets = [t.id for t in statement.targets if isinstance(t, ast.Name)]
                    elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                        targets = [statement.target.id]
                    else:
                        continue
                    if DESCRIPTION_ATTRIBUTES & set(targets):
                        nodes.append(statement.value)
            elif isinstance(node, ast.FunctionDef) and node.name == "__init__":
                # Default descriptions in constructors: def __init__(self, description="...").
                args = node.args
                for arg, default in zip(args.args[len(args.args) - len(args.defaults) :], args.defaults, strict=True):
                    if arg.arg == "description":
                        nodes.append(default)
            found += [Emitted(text, where) for n in nodes for text in literal_parts(n)]
    return found


EMITTED = emitted_descriptions()


def test_the_source_scan_finds_the_descriptions_it_is_meant_to_check() -> None:
    # Guards the scanner itself: each kind of emitter is represented.
    texts = {e.text for e in EMITTED}
    assert len(EMITTED) >= 80
    assert "Request body too large" in texts  # send_error
    assert "Malformed form" in texts  # error_response
    assert "redirect_uris is required" in texts  # registration_error
    assert "The JWT bearer grant is not supported" in texts  # error_description=
    assert "The client metadata document could not be fetched" in texts  # CIMD class attribute
    assert "The requested resource was not authorized for this grant" in texts  # OIDCProviderError subclass
    assert "This approval did not come from the consent page; start again from your application." in texts
    assert "redirect URIs must not contain a fragment (RFC 6749 section 3.1.2)" in texts
    assert "The authorization server could not complete the request" in texts  # constructor default
    assert " is not allowed" in texts  # f-string constant part


@pytest.mark.parametrize("emitted", EMITTED, ids=lambda e: e.where)
def test_every_description_literal_in_the_package_is_in_the_rfc_6749_charset(emitted: Emitted) -> None:
    assert CHARSET.fullmatch(emitted.text), f"{emitted.where}: {emitted.text!r}"


# --- safe_description on hostile input ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("RFC 6749 \u00a74.1.2.1", "RFC 6749 section 4.1.2.1"),
        ('the "issuer" was wrong', "the issuer was wrong"),
        ("C:\\path\\to", "C:pathto"),
        ("line one\nline two\r\n\ttabbed", "line oneline twotabbed"),
        ("nul\x00 del\x7f esc\x1b[31m", "nul del esc[31m"),
        ("caf\u00e9 \u2014 \u65e5\u672c \U0001f600", "caf   "),
        ("\u202eevil\u200b", "evil"),  # bidi override and zero-width space
        ("plain text stays as it is: ~!#$%&'()*+,-./:;<=>?@[]^_`{|}", None),
    ],
)
def test_safe_description_drops_everything_outside_the_charset(text: str, expected: str | None) -> None:
    cleaned = safe_description(text)
    assert cleaned == (text if expected is None else expected)
    assert CHARSET.fullmatch(cleaned)


def test_safe_description_holds_for_every_code_point_and_caps_the_length() -> None:
    every = "".join(chr(c) for c in range(0x3000) if not 0xD800 <= c <= 0xDFFF)
    assert CHARSET.fullmatch(safe_description(every))
    assert len(safe_description("a" * 10_000)) == 500
    assert len(safe_description("\u00a7" * 10_000)) == 500


def test_the_sdk_errors_we_raise_carry_clean_descriptions() -> None:
    hostile = 'upstream "x" \u00a72 \\ \u00e9\n'
    assert CHARSET.fullmatch(to_authorize_error(AccessDenied(hostile)).error_description or "")
    assert CHARSET.fullmatch(to_token_error(InvalidTarget(hostile)).error_description or "")
    assert CHARSET.fullmatch(registration_error("invalid_redirect_uri", hostile).error_description or "")


async def test_the_http_error_writers_clean_the_description() -> None:
    hostile = 'bad "value" \\ \u00a7 \u00e9\r\nSet-Cookie: x=1'
    body = json.loads(error_response(None, 400, "invalid_request", hostile).body)
    assert CHARSET.fullmatch(body["error_description"])
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await send_error(send, 400, "invalid_request", hostile)
    assert CHARSET.fullmatch(json.loads(sent[1]["body"])["error_description"])


def test_error_redirects_to_the_client_carry_a_clean_description() -> None:
    # A description built from what the upstream IdP published (discovery names its issuer)
    # reaches the client's redirect URI: RFC 6749 §4.1.2.1 applies there too.
    txn = LoginTransaction(
        client_id="c",
        redirect_uri="http://127.0.0.1:9/cb",
        redirect_uri_provided_explicitly=True,
        code_challenge="x" * 43,
        client_state="s",
        scopes=["mcp"],
        resource="https://mcp.example/mcp",
        nonce="n",
        code_verifier="v",
        created_at=0.0,
    )
    ctx = cast(Any, SimpleNamespace(issuer="https://auth.example"))
    error = UpstreamError('upstream IdP published a different issuer (https://\u00e9vil.example/"\\\u00a7)')
    location = client_redirect(ctx, txn, error="server_error", error_description=error.description)
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == ["server_error"]
    assert query["state"] == ["s"]
    assert CHARSET.fullmatch(query["error_description"][0])
    assert "section" in query["error_description"][0]
