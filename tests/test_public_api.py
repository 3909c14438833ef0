"""The public surface: what ``import mcp_oidc_provider`` promises, and the SDK protocol it implements."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import inspect

import typing_extensions
from mcp.server.auth.provider import OAuthAuthorizationServerProvider

import mcp_oidc_provider
from mcp_oidc_provider import OIDCProvider

CURATED_API = {
    "Clock",
    "ConfigurationError",
    "FederatedAccessToken",
    "FrozenClock",
    "OIDCProvider",
    "OIDCProviderError",
    "OIDCTokenVerifier",
    "ProviderSettings",
    "StaticClient",
    "StoreOutageMiddleware",
    "SystemClock",
    "UpstreamSessionEnded",
    "UpstreamSettings",
    "UpstreamTemporarilyUnavailable",
    "UpstreamTokens",
    "default_claims_mapper",
    "generate_jwks",
    "get_upstream_tokens",
    "store_from_url",
}

#: SDK protocol methods a provider may leave out: mcp 2.x's SEP-990 grant, off unless enabled.
OPTIONAL_PROTOCOL_METHODS = {"exchange_identity_assertion"}


def sdk_protocol_methods() -> set[str]:
    return set(typing_extensions.get_protocol_members(OAuthAuthorizationServerProvider)) - OPTIONAL_PROTOCOL_METHODS


def test_all_lists_exactly_the_curated_public_names() -> None:
    assert set(mcp_oidc_provider.__all__) == CURATED_API
    assert len(mcp_oidc_provider.__all__) == len(CURATED_API), "a name is listed twice in __all__"


def test_every_public_name_resolves_and_star_import_gives_exactly_them() -> None:
    for name in mcp_oidc_provider.__all__:
        assert getattr(mcp_oidc_provider, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from mcp_oidc_provider import *", namespace)
    assert set(namespace) - {"__builtins__"} == CURATED_API


def test_the_package_ships_a_py_typed_marker() -> None:
    marker = importlib.resources.files("mcp_oidc_provider").joinpath("py.typed")
    assert marker.is_file()


def test_version_attribute_matches_the_installed_distribution() -> None:
    assert mcp_oidc_provider.__version__ == importlib.metadata.version("mcp-oidc-provider")


def test_the_console_script_is_declared_for_keygen() -> None:
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("mcp-oidc-provider") == "mcp_oidc_provider.run.cli:main"


def test_the_sdk_protocol_declares_the_methods_we_expect_to_implement() -> None:
    # Guards the next test against passing vacuously if the protocol could not be introspected.
    assert {"get_client", "register_client", "authorize", "load_access_token", "revoke_token"} <= sdk_protocol_methods()


def test_oidc_provider_has_every_method_of_the_sdk_provider_protocol() -> None:
    missing = sorted(name for name in sdk_protocol_methods() if not hasattr(OIDCProvider, name))
    assert missing == []


def test_every_protocol_method_of_oidc_provider_is_a_coroutine_function() -> None:
    not_async = sorted(
        name for name in sdk_protocol_methods() if not inspect.iscoroutinefunction(getattr(OIDCProvider, name))
    )
    assert not_async == []


def test_every_protocol_method_accepts_the_positional_arguments_the_sdk_passes() -> None:
    mismatched = []
    for name in sorted(sdk_protocol_methods()):
        declared = inspect.signature(getattr(OAuthAuthorizationServerProvider, name)).parameters.values()
        ours = inspect.signature(getattr(OIDCProvider, name)).parameters.values()
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        required_ours = [p for p in ours if p.kind in positional and p.default is inspect.Parameter.empty]
        accepted_ours = [p for p in ours if p.kind in positional]
        declared_count = len([p for p in declared if p.kind in positional])
        if not len(required_ours) <= declared_count <= len(accepted_ours):
            mismatched.append(name)
    assert mismatched == []
