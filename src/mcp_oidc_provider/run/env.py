"""Configuration from the environment and from a TOML file, with one set of names: the only
module of the package that reads the environment.

The variables are generated from the models, so a field added to one of them appears here,
in ``serve --help`` and in the file without further work:

- every :class:`ProviderSettings` field is the variable of its name in capitals (``CONSENT``,
  ``RATE_LIMIT_PER_MINUTE``...), except ``issuer_url`` (``BASE_URL``), ``upstream`` (below) and
  ``trust_forwarded_for`` (``FORWARDED_ALLOW_IPS``, which also tells uvicorn whom to believe);
- every :class:`UpstreamSettings` field is ``UPSTREAM_`` + its name (``UPSTREAM_ISSUER``,
  ``UPSTREAM_EXTRA_AUTHORIZE_PARAMS``...), ``token_endpoint_auth_method`` being
  ``UPSTREAM_AUTH_METHOD``;
- the deployment values of :class:`Deployment` (``HOST``, ``PORT``, ``STORE_URL``,
  ``SECRET_KEY``...).

Lists are comma- or space-separated (or a JSON array); mappings and static clients are JSON. In
the TOML file the same names are keys (any case); the environment overrides the file. Every
error is a :class:`ConfigurationError` of one line naming the variable the user set and how to
fix it; secrets are never echoed.
"""

from __future__ import annotations

import ast
import base64
import binascii
import inspect
import ipaddress
import json
import os
import re
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    SecretBytes,
    SecretStr,
    ValidationError,
    create_model,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from ..core.errors import ConfigurationError
from ..core.presets import PRESETS
from ..core.redirect_policy import is_loopback_host
from ..core.settings import ProviderSettings, UpstreamSettings
from ..crypto.keys import parse_jwks_json
from ..crypto.sealing import Sealer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

SECRETS_HINT = "generate one with `mcp-oidc-provider secrets`"
MIN_SECRET_KEY_BYTES = 32


# Value checks shared by every program reading this configuration.


def secret_key_bytes(value: object) -> bytes | None:
    """``SECRET_KEY``: base64url of at least 32 random bytes (the seed of every derived secret)."""
    if value is None or isinstance(value, bytes):
        raw = value
    elif isinstance(value, (SecretStr, SecretBytes)):
        return secret_key_bytes(value.get_secret_value())
    elif isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", text):
            raise ValueError(f"must be base64url (A-Z a-z 0-9 - _); {SECRETS_HINT}")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text.rstrip("=")) % 4))
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"must be base64url; {SECRETS_HINT}") from exc
    else:
        raise ValueError(f"must be a base64url string; {SECRETS_HINT}")
    if raw is None:
        return None
    if len(raw) < MIN_SECRET_KEY_BYTES:
        raise ValueError(f"too short: {len(raw)} bytes, at least {MIN_SECRET_KEY_BYTES} needed; {SECRETS_HINT}")
    # A random 32-byte key has about 30 distinct byte values; fewer than half is a pattern, a
    # repeated character or a pass phrase, never the output of a random generator.
    if len(set(raw)) < min(len(raw), 256) // 2:
        raise ValueError(f"too weak: not random (repeated bytes); {SECRETS_HINT}")
    return raw


def _jwks(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        return parse_jwks_json(value if isinstance(value, str) else json.dumps(value))
    except ConfigurationError as exc:
        raise ValueError(f"{exc}; generate one with `mcp-oidc-provider keygen`") from None


def _encryption_keys(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        Sealer.from_text(value)
    except ConfigurationError:
        raise ValueError(
            f"must be comma-separated Fernet keys (32 url-safe base64 bytes each); {SECRETS_HINT}"
        ) from None
    return value


def _trusted_proxies(value: tuple[str, ...]) -> tuple[str, ...]:
    for entry in value:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address, a network (CIDR) or *") from None
    return value


def _absolute_url(value: str | None) -> str | None:
    if value is not None and not re.match(r"https?://[^/?#]+", value):
        raise ValueError("must be an absolute http(s) URL")
    return value.rstrip("/") if value is not None else None


class Deployment(BaseModel):
    """Where and how this process runs (the authorization server, integrated or alone)."""

    #: Interface to listen on; anything but loopback needs BASE_URL.
    host: str = "127.0.0.1"
    #: Port to listen on.
    port: int = Field(default=8000, ge=1, le=65535)
    #: Public URL of this server: our issuer, in every token (https, or http on loopback only).
    base_url: Annotated[str | None, AfterValidator(_absolute_url)] = None
    #: Reverse proxies trusted for X-Forwarded-For/-Proto (addresses or CIDRs, or *): uvicorn then
    #: takes the client address from the header, so RATE_LIMIT_PER_MINUTE counts per real client.
    #: Unset behind a proxy, every request has the proxy's address and shares one budget.
    forwarded_allow_ips: Annotated[tuple[str, ...], AfterValidator(_trusted_proxies)] = ()
    #: memory://, disk://PATH, redis://[:PASSWORD@]HOST:PORT/DB or rediss://...
    store_url: str = "memory://"
    #: At start-up the store must answer a write, a read and a delete within this many seconds.
    store_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    #: Private JWKS (JSON) from `mcp-oidc-provider keygen`.
    jwks: Annotated[dict[str, Any] | None, NoDecode, BeforeValidator(_jwks)] = None
    #: Seed of client secrets, cookies and derived keys: base64url of 32+ random bytes
    #: (`mcp-oidc-provider secrets`).
    secret_key: Annotated[bytes | None, BeforeValidator(secret_key_bytes)] = None
    #: Comma-separated Fernet keys sealing upstream tokens and claims at rest; the first seals.
    encryption_keys: Annotated[str | None, AfterValidator(_encryption_keys)] = None


class ResourceServerDeployment(BaseModel):
    """An MCP server verifying the tokens of a separate authorization server (proxy mode)."""

    #: Interface to listen on; anything but loopback needs BASE_URL.
    host: str = "127.0.0.1"
    #: Port to listen on.
    port: int = Field(default=8000, ge=1, le=65535)
    #: Public URL of this MCP server (tokens must name BASE_URL/mcp as their audience).
    base_url: Annotated[str | None, AfterValidator(_absolute_url)] = None
    #: The authorization server's base URL (its issuer), e.g. https://auth.example.com
    auth_issuer: Annotated[str, AfterValidator(_absolute_url)]
    #: The store the authorization server uses (redis://... or disk://PATH), for revocations.
    store_url: str
    #: At start-up the store must answer a write, a read and a delete within this many seconds.
    store_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    #: Reverse proxies trusted for X-Forwarded-For/-Proto (addresses or CIDRs, or *).
    forwarded_allow_ips: Annotated[tuple[str, ...], AfterValidator(_trusted_proxies)] = ()
    #: The authorization server's SECRET_KEY (opens the sealed grants if ENCRYPTION_KEYS is unset).
    secret_key: Annotated[bytes | None, BeforeValidator(secret_key_bytes)] = None
    #: The authorization server's ENCRYPTION_KEYS.
    encryption_keys: Annotated[str | None, AfterValidator(_encryption_keys)] = None
    #: A revocation at the authorization server reaches this server's bearer cache within this
    #: many seconds (one small store read per interval); 0: the grant is read on every request.
    revocation_propagation_seconds: float = Field(default=1.0, ge=0, le=60)
    #: The authorization server's public keys are re-read this often: a retired key stops being
    #: trusted within this bound.
    key_refresh_seconds: float = Field(default=60.0, gt=0, le=3600)


# The variables, generated from the models.

Target = Literal["deployment", "provider", "upstream"]

#: Fields that are not a variable of their own name.
_REPLACED = {
    ("provider", "issuer_url"): "BASE_URL",
    ("provider", "upstream"): "UPSTREAM_*",
    ("provider", "trust_forwarded_for"): "FORWARDED_ALLOW_IPS",
}
_RENAMED = {("upstream", "token_endpoint_auth_method"): "UPSTREAM_AUTH_METHOD"}
_DEFAULT_TEXT = {
    "BASE_URL": "http://HOST:PORT (loopback only)",
    "RESOURCE_URLS": "BASE_URL/mcp",
    "UPSTREAM_ISSUER": "the UPSTREAM_PRESET's if it has one, else an embedded development IdP",
    "UPSTREAM_CLIENT_ID": "required with UPSTREAM_ISSUER",
    "UPSTREAM_AUTH_METHOD": "client_secret_basic, or none without a secret",
    "JWKS": "generated once, kept in the store",
    "SECRET_KEY": "generated once, kept in the store",
    "ENCRYPTION_KEYS": "derived from SECRET_KEY",
    "FORWARDED_ALLOW_IPS": "none: proxy headers ignored",
}
#: Meanings for fields whose models say nothing of themselves (their comments win otherwise).
_HELP = {
    "UPSTREAM_ISSUER": "The OIDC IdP's issuer URL, exactly as it publishes it.",
    "UPSTREAM_CLIENT_ID": "Our client id at the IdP.",
    "UPSTREAM_CLIENT_SECRET": "Our client secret at the IdP (unset: a public client).",
    "UPSTREAM_SCOPES": "Scopes asked of the IdP; must include openid.",
    "UPSTREAM_AUTH_METHOD": "How we authenticate at the IdP's token endpoint.",
    "UPSTREAM_TIMEOUT_SECONDS": "Timeout of every HTTP call to the IdP.",
    "SCOPES": "Scopes clients may request.",
    "REQUIRED_SCOPES": "Scopes a token needs at the MCP endpoint; a subset of SCOPES.",
    "CALLBACK_PATH": "Where the IdP redirects back to.",
    "ACCESS_TOKEN_TTL": "Access token lifetime, seconds (60 to 86400).",
    "REFRESH_TOKEN_TTL": "Refresh token and grant lifetime, seconds.",
    "AUTHORIZATION_CODE_TTL": "Authorization code lifetime, seconds (10 to 600, RFC 6749 §4.1.2).",
    "LOGIN_TRANSACTION_TTL": "Time a user has to finish logging in at the IdP, seconds.",
    "SIGNING_ALG": "Algorithm of the keys the server generates.",
    "CONSENT": "Consent page before the upstream login: always; remember (once per client per browser); "
    "off (never: only when every client is trusted).",
    "CONSENT_REMEMBER_SECONDS": "How long a remembered approval lasts, seconds.",
    "TRUSTED_CLIENT_IDS": "Client ids that never see the consent page.",
    "STATIC_CLIENTS": 'Clients registered in configuration, a JSON array of {"client_id", "redirect_uris", '
    '"client_secret", "client_name", "scopes", "token_endpoint_auth_method", "trusted"}.',
    "RATE_LIMIT_PER_MINUTE": "Requests per minute per client address at /register and /authorize (0: no "
    "limit); behind a reverse proxy it needs FORWARDED_ALLOW_IPS, else all clients share one budget.",
}
#: Never echoed in an error, whatever their type.
_SECRET_NAMES = frozenset({"SECRET_KEY", "ENCRYPTION_KEYS", "JWKS", "STATIC_CLIENTS"})


@dataclass(frozen=True)
class Variable:
    name: str
    target: Target
    field: str
    info: FieldInfo
    help: str

    @property
    def secret(self) -> bool:
        return self.name in _SECRET_NAMES or "Secret" in repr(self.info.annotation)

    @property
    def kind(self) -> str:
        annotation = _without_none(self.info.annotation)
        if _is_word_list(annotation):
            return "list"
        if get_origin(annotation) is Literal:
            return "|".join(str(a) for a in get_args(annotation))
        if annotation is bool:
            return "true|false"
        if annotation in (int, float):
            return "number"
        if self.name == "JWKS" or _is_complex(annotation):
            return "JSON"
        return "text"

    def default_text(self, default_port: int) -> str:
        if self.name in _DEFAULT_TEXT:
            return _DEFAULT_TEXT[self.name]
        if self.name == "PORT":
            return str(default_port)
        if self.info.is_required():
            return "required"
        default = self.info.get_default(call_default_factory=True)
        if default is None:
            return "unset"
        if isinstance(default, (tuple, list)):
            return " ".join(str(v) for v in default) if default else "empty"
        if isinstance(default, Mapping):
            return json.dumps(dict(default)) if default else "{}"
        if isinstance(default, bool):
            return str(default).lower()
        return str(default)


def _without_none(annotation: Any) -> Any:
    args = get_args(annotation)
    if get_origin(annotation) in (Union, type(int | None)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def _is_word_list(annotation: Any) -> bool:
    annotation = _without_none(annotation)
    if get_origin(annotation) not in (tuple, list, set, frozenset):
        return False
    args = [a for a in get_args(annotation) if a is not Ellipsis]
    return len(args) == 1 and (args[0] is str or get_origin(args[0]) is Literal)


def _is_complex(annotation: Any) -> bool:
    annotation = _without_none(annotation)
    origin = get_origin(annotation) or annotation
    return inspect.isclass(origin) and (
        issubclass(origin, (BaseModel, Mapping, tuple, list, set, frozenset)) or origin is dict
    )


def _field_docs(model: type[BaseModel]) -> dict[str, str]:
    """The ``#:`` comment above each field, or its ``description``."""
    docs: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)) or klass is BaseModel:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        node = ast.parse(source).body[0]
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                comment: list[str] = []
                line = statement.lineno - 2
                while line >= 0 and lines[line].strip().startswith("#:"):
                    comment.insert(0, lines[line].strip()[2:].strip())
                    line -= 1
                if comment:
                    docs[statement.target.id] = " ".join(comment)
    for name, info in model.model_fields.items():
        if info.description:
            docs[name] = info.description
    return docs


def _variables_of(model: type[BaseModel], target: Target, prefix: str) -> list[Variable]:
    docs = _field_docs(model)
    found = []
    for name, info in model.model_fields.items():
        if (target, name) in _REPLACED:
            continue
        env_name = _RENAMED.get((target, name), prefix + name.upper())
        found.append(Variable(env_name, target, name, info, _HELP.get(env_name) or docs.get(name, "")))
    return found


def provider_variables() -> tuple[Variable, ...]:
    """Every variable of the authorization server, in the order of ``serve --help``."""
    return (
        *_variables_of(Deployment, "deployment", ""),
        *_variables_of(UpstreamSettings, "upstream", "UPSTREAM_"),
        *_variables_of(ProviderSettings, "provider", ""),
    )


def resource_server_variables() -> tuple[Variable, ...]:
    return tuple(_variables_of(ResourceServerDeployment, "deployment", ""))


def variables_help(variables: Sequence[Variable], default_port: int) -> str:
    """The variable list for ``--help``: name, kind, default and meaning of each."""
    out = [
        "configuration (environment variables, or the same names as keys of the --config TOML file;",
        "the environment wins; lists: comma- or space-separated; JSON: a JSON value):",
        "",
    ]
    for variable in variables:
        out.append(f"  {variable.name} ({variable.kind}; default: {variable.default_text(default_port)})")
        if variable.help:
            out.extend(textwrap.wrap(variable.help, 96, initial_indent="      ", subsequent_indent="      "))
    return "\n".join(out)


def variables_markdown(variables: Sequence[Variable], default_port: int) -> str:
    """The same list as a Markdown table (the README's)."""
    rows = ["| Variable | Kind | Default | Meaning |", "|---|---|---|---|"]
    for v in variables:
        meaning = v.help.replace("|", "\\|")
        kind = v.kind.replace("|", " \\| ")
        rows.append(f"| `{v.name}` | {kind} | {v.default_text(default_port)} | {meaning} |")
    return "\n".join(rows)


# Reading: pydantic-settings over a model flattened from the variables.


def _words(value: object) -> object:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                raise ValueError("is neither a JSON array nor a comma- or space-separated list") from None
        return tuple(word for word in re.split(r"[,\s]+", text) if word)
    return value


def _flat_field(variable: Variable, default_port: int) -> tuple[Any, Any]:
    info = variable.info
    annotation: Any = info.annotation
    metadata: list[Any] = list(info.metadata)
    if _is_word_list(annotation):
        metadata = [NoDecode, BeforeValidator(_words), *metadata]
    # Every variable may be left out here; what is required is the models' decision.
    annotation = annotation | None if info.is_required() else annotation
    if variable.name == "PORT":
        default: Any = Field(default=default_port)
    elif info.is_required():
        default = Field(default=None)
    elif info.default_factory is not None:
        default = Field(default_factory=info.default_factory)
    else:
        default = Field(default=info.default)
    for item in metadata:
        annotation = Annotated[annotation, item]
    return annotation, default


class _MappingEnvSource(EnvSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, False, True, None)


def _settings_class(
    variables: Sequence[Variable], default_port: int, environ: Mapping[str, str], file: Path | None
) -> type[BaseSettings]:
    fields = {v.name.lower(): _flat_field(v, default_port) for v in variables}

    class Configuration(BaseSettings):
        model_config = SettingsConfigDict(case_sensitive=False, extra="forbid", env_ignore_empty=True)

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            env = _MappingEnvSource(settings_cls, environ)
            return (env, TomlConfigSettingsSource(settings_cls, toml_file=file)) if file else (env,)

    return create_model("Configuration", __base__=Configuration, **fields)  # type: ignore[call-overload,no-any-return]


@dataclass(frozen=True)
class _Origin:
    environ: Mapping[str, str]
    file: Path | None
    file_keys: frozenset[str]

    def of(self, name: str) -> str:
        if self.environ.get(name):
            return " (environment)"
        if name in self.file_keys and self.file is not None:
            return f" (in {self.file.name})"
        return ""


def _read(
    variables: Sequence[Variable],
    default_port: int,
    environ: Mapping[str, str] | None,
    config_file: str | os.PathLike[str] | None,
) -> tuple[dict[Target, dict[str, Any]], _Origin]:
    env = dict(os.environ if environ is None else environ)
    file = Path(config_file) if config_file is not None else None
    file_keys: frozenset[str] = frozenset()
    if file is not None:
        try:
            with file.open("rb") as handle:
                file_keys = frozenset(k.upper() for k in tomllib.load(handle))
        except OSError as exc:
            raise ConfigurationError(f"--config {file}: cannot read it ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"--config {file}: not valid TOML ({exc})") from None
    # Variable names are capitals; a lower-case variable of the same name is someone else's.
    env = {k: v for k, v in env.items() if k == k.upper()}
    origin = _Origin(env, file, file_keys)
    by_name = {v.name: v for v in variables}
    try:
        flat = _settings_class(variables, default_port, env, file)()
    except SettingsError as exc:
        match = re.search(r'field "([^"]+)"', str(exc))
        name = match.group(1).upper() if match else "a variable"
        raise ConfigurationError(
            f"{name}{origin.of(name)} is not valid JSON; see `mcp-oidc-provider serve --help`"
        ) from None
    except ValidationError as exc:
        raise ConfigurationError(_explain(exc, lambda loc: _flat_name(loc, by_name), by_name, origin)) from None
    values: dict[Target, dict[str, Any]] = {"deployment": {}, "provider": {}, "upstream": {}}
    for name in flat.model_fields_set:
        variable = by_name[name.upper()]
        values[variable.target][variable.field] = getattr(flat, name)
    if "port" not in values["deployment"]:
        values["deployment"]["port"] = default_port
    return values, origin


def _flat_name(loc: tuple[int | str, ...], by_name: Mapping[str, Variable]) -> tuple[str | None, tuple[int | str, ...]]:
    if loc and isinstance(loc[0], str):
        return loc[0].upper(), loc[1:]
    return None, loc


def _model_name(loc: tuple[int | str, ...]) -> tuple[str | None, tuple[int | str, ...]]:
    """A ProviderSettings error location as the variable the user set."""
    if not loc:
        return None, loc
    target: Target = "provider"
    if loc[0] == "upstream":
        target, loc = "upstream", loc[1:]
        if not loc:
            return None, loc
    head = str(loc[0])
    if (target, head) in _REPLACED:
        return _REPLACED[(target, head)], loc[1:]
    return _RENAMED.get((target, head), ("UPSTREAM_" if target == "upstream" else "") + head.upper()), loc[1:]


def _rename_fields(message: str) -> str:
    """Field names in a model-level message, as variable names."""
    for (_target, name), env_name in {**_RENAMED, **_REPLACED}.items():
        if not env_name.endswith("*"):
            message = re.sub(rf"\b{name}\b", env_name, message)
    for variable in _variables_of(UpstreamSettings, "upstream", "UPSTREAM_"):
        message = re.sub(rf"\bupstream {variable.field}\b", variable.name, message)
    for variable in _variables_of(ProviderSettings, "provider", ""):
        if "_" in variable.field:  # plain words (scopes, consent) stay words
            message = re.sub(rf"\b{variable.field}\b", variable.name, message)
    return re.sub(r"\bstatic client\b", "STATIC_CLIENTS: client", message)


_HINTS = {
    "UPSTREAM_CLIENT_SECRET": "set UPSTREAM_CLIENT_SECRET, or UPSTREAM_AUTH_METHOD=none for a public client",
}


def _explain(
    exc: ValidationError,
    locate: Callable[[tuple[int | str, ...]], tuple[str | None, tuple[int | str, ...]]],
    by_name: Mapping[str, Variable],
    origin: _Origin,
) -> str:
    """One line for every error: ``NAME=value (where): what is wrong``."""
    parts = []
    for error in exc.errors(include_url=False):
        name, rest = locate(tuple(error["loc"]))
        message = _rename_fields(str(error["msg"]).removeprefix("Value error, "))
        message = message[0].lower() + message[1:] if message[:2] != message[:2].upper() else message
        if name is None:
            hints = [hint for hinted, hint in _HINTS.items() if hinted in message]
            parts.append(message + "".join(f" ({hint})" for hint in hints))
            continue
        variable = by_name.get(name)
        if error["type"] == "extra_forbidden":
            instead = next((v for (_, f), v in _REPLACED.items() if f.upper() == name), None)
            fix = f"use {instead}" if instead else "see `mcp-oidc-provider serve --help`"
            parts.append(f"{name}{origin.of(name)} is not a setting; {fix}")
            continue
        if error["type"] == "missing":
            meaning = variable.help if variable is not None else ""
            parts.append(f"{name} is required" + (f": {meaning}" if meaning else ""))
            continue
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest)
        if error["type"] == "literal_error" and variable is not None and not rest:
            choices = get_args(_without_none(variable.info.annotation))
            given = f", not {error['input']!r}" if not variable.secret else ""
            parts.append(f"{name} must be one of {', '.join(map(str, choices))}{given}{origin.of(name)}")
            continue
        secret = variable is None or variable.secret or name in _SECRET_NAMES
        shown = ""
        raw = origin.environ.get(name)
        if not secret and raw is not None:
            shown = f"={raw}"
        elif not secret and isinstance(error.get("input"), (str, int, float)):
            shown = f"={error['input']}"
        hint = f" ({_HINTS[name]})" if name in _HINTS else ""
        parts.append(f"{name}{shown}{where}{origin.of(name)}: {message}{hint}")
    return "; ".join(dict.fromkeys(parts))


# What the programs get.


def _listen_url(host: str, port: int, base_url: str | None) -> str:
    if base_url is not None:
        return base_url
    if not is_loopback_host(host):
        raise ConfigurationError(
            f"HOST={host} needs BASE_URL=https://your.public.host: the public URL clients reach this server at"
        )
    url_host = f"[{host}]" if ":" in host else host
    return f"http://{url_host}:{port}"


_DEV_UPSTREAM = UpstreamSettings.model_construct(
    issuer="https://development-idp.invalid", client_id="dev", client_secret=None, token_endpoint_auth_method="none"
)


@dataclass(frozen=True)
class EnvConfig:
    host: str
    port: int
    base_url: str
    store_url: str
    upstream_issuer: str | None
    upstream_client_id: str | None
    upstream_client_secret: str | None
    upstream_scopes: tuple[str, ...]
    upstream_auth_method: str
    resource_urls: tuple[str, ...]
    secret_key: bytes | None
    jwks: dict[str, Any] | None = None
    encryption_keys: str | None = None
    forwarded_allow_ips: tuple[str, ...] = ()
    store_timeout_seconds: float = 5.0
    #: The ProviderSettings fields the configuration set (issuer and upstream aside).
    provider_values: Mapping[str, Any] = field(default_factory=dict)
    #: The UpstreamSettings fields it set (issuer, client and secret aside).
    upstream_values: Mapping[str, Any] = field(default_factory=dict)
    _origin: _Origin | None = field(default=None, repr=False, compare=False)
    _validated: dict[tuple[str, str, str | None], ProviderSettings] = field(
        default_factory=dict, repr=False, compare=False
    )

    def provider_settings(self, upstream_issuer: str, client_id: str, client_secret: str | None) -> ProviderSettings:
        """The validated settings for this upstream client (built once: validation logs warnings)."""
        key = (upstream_issuer, client_id, client_secret)
        if key not in self._validated:
            upstream: dict[str, Any] = {
                **self.upstream_values,
                "issuer": upstream_issuer,
                "client_id": client_id,
                "client_secret": SecretStr(client_secret) if client_secret is not None else None,
                "token_endpoint_auth_method": self.upstream_auth_method,
            }
            self._validated[key] = _provider_settings(
                {**self.provider_values, "resource_urls": self.resource_urls}, self.base_url, upstream, self._origin
            )
        return self._validated[key]


def _provider_settings(
    values: Mapping[str, Any],
    base_url: str,
    upstream: Mapping[str, Any] | UpstreamSettings,
    origin: _Origin | None,
) -> ProviderSettings:
    try:
        return ProviderSettings.model_validate({**values, "issuer_url": base_url, "upstream": upstream})
    except ValidationError as exc:
        by_name = {v.name: v for v in provider_variables()}
        origin = origin or _Origin({}, None, frozenset())
        raise ConfigurationError(_explain(exc, _model_name, by_name, origin)) from None


def load_env_config(
    environ: Mapping[str, str] | None = None,
    *,
    default_port: int = 8000,
    config_file: str | os.PathLike[str] | None = None,
) -> EnvConfig:
    """The authorization server's configuration; raises :class:`ConfigurationError` (one line)."""
    variables = provider_variables()
    values, origin = _read(variables, default_port, environ, config_file)
    by_name = {v.name: v for v in variables}
    try:
        deployment = Deployment.model_validate(values["deployment"])
    except ValidationError as exc:
        raise ConfigurationError(_explain(exc, lambda loc: _flat_name(loc, by_name), by_name, origin)) from None
    base_url = _listen_url(deployment.host, deployment.port, deployment.base_url)
    upstream = dict(values["upstream"])
    preset = PRESETS[upstream.get("preset", "oidc")]
    issuer = upstream.pop("issuer", None) or preset.issuer
    client_id = upstream.pop("client_id", None)
    secret = upstream.pop("client_secret", None)
    if issuer is not None and client_id is None:
        given = "UPSTREAM_ISSUER" if "issuer" in values["upstream"] else f"UPSTREAM_PRESET={upstream['preset']}"
        raise ConfigurationError(
            f"{given} needs UPSTREAM_CLIENT_ID: the client id registered for this server at the IdP"
        )
    client_secret = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    auth_method = upstream.pop("token_endpoint_auth_method", "client_secret_basic" if client_secret else "none")
    provider = dict(values["provider"])
    resource_urls = tuple(provider.pop("resource_urls", ())) or (base_url + "/mcp",)
    config = EnvConfig(
        host=deployment.host,
        port=deployment.port,
        base_url=base_url,
        store_url=deployment.store_url,
        upstream_issuer=issuer,
        upstream_client_id=client_id,
        upstream_client_secret=client_secret,
        upstream_scopes=tuple(upstream.get("scopes", preset.scopes)),
        upstream_auth_method=auth_method,
        resource_urls=resource_urls,
        secret_key=deployment.secret_key,
        jwks=deployment.jwks,
        encryption_keys=deployment.encryption_keys,
        forwarded_allow_ips=deployment.forwarded_allow_ips,
        store_timeout_seconds=deployment.store_timeout_seconds,
        provider_values=provider,
        upstream_values=upstream,
        _origin=origin,
    )
    # Everything is checked now, before a store, an IdP or a socket is touched.
    if issuer is not None and client_id is not None:
        config.provider_settings(issuer, client_id, client_secret)
    else:
        _provider_settings({**provider, "resource_urls": resource_urls}, base_url, _DEV_UPSTREAM, origin)
    return config


@dataclass(frozen=True)
class ResourceServerConfig:
    host: str
    port: int
    base_url: str
    auth_issuer: str
    store_url: str
    store_timeout_seconds: float
    forwarded_allow_ips: tuple[str, ...]
    secret_key: bytes | None
    encryption_keys: str | None
    revocation_propagation_seconds: float = 1.0
    key_refresh_seconds: float = 60.0


def load_resource_server_config(
    environ: Mapping[str, str] | None = None, *, config_file: str | os.PathLike[str] | None = None
) -> ResourceServerConfig:
    """The proxy-mode MCP server's configuration (``AUTH_ISSUER`` and ``STORE_URL`` required)."""
    variables = resource_server_variables()
    values, origin = _read(variables, 8000, environ, config_file)
    by_name = {v.name: v for v in variables}
    try:
        deployment = ResourceServerDeployment.model_validate(values["deployment"])
    except ValidationError as exc:
        raise ConfigurationError(_explain(exc, lambda loc: _flat_name(loc, by_name), by_name, origin)) from None
    return ResourceServerConfig(
        host=deployment.host,
        port=deployment.port,
        base_url=_listen_url(deployment.host, deployment.port, deployment.base_url),
        auth_issuer=deployment.auth_issuer,
        store_url=deployment.store_url,
        store_timeout_seconds=deployment.store_timeout_seconds,
        forwarded_allow_ips=deployment.forwarded_allow_ips,
        secret_key=deployment.secret_key,
        encryption_keys=deployment.encryption_keys,
        revocation_propagation_seconds=deployment.revocation_propagation_seconds,
        key_refresh_seconds=deployment.key_refresh_seconds,
    )


def environment_with(overrides: Mapping[str, str]) -> dict[str, str]:
    """The process environment with some variables replaced (command-line options)."""
    return {**os.environ, **overrides}


def secret_key_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    env = os.environ if environ is None else environ
    try:
        return secret_key_bytes(env.get("SECRET_KEY") or None)
    except ValueError as exc:
        raise ConfigurationError(f"SECRET_KEY: {exc}") from None
