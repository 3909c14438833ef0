"""Signing keys: ``keygen``, a configured JWKS, keys shared through the store, and bad key sets."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
import redis.asyncio as aioredis
from joserfc.jwk import RSAKey
from key_value.aio.protocols import AsyncKeyValue
from key_value.aio.stores.disk import DiskStore
from key_value.aio.stores.memory import MemoryStore
from key_value.aio.wrappers.prefix_collections import PrefixCollectionsWrapper
from support.harness import Harness, integrated_server

from mcp_oidc_provider import (
    ConfigurationError,
    OIDCProvider,
    ProviderSettings,
    UpstreamSettings,
    generate_jwks,
    store_from_url,
)
from mcp_oidc_provider.run.cli import main
from mcp_oidc_provider.run.devidp import DEV_CLIENT_ID, DEV_CLIENT_SECRET
from mcp_oidc_provider.run.env import load_env_config

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
REDIS_URL = "redis://127.0.0.1:6379/7"


@pytest.fixture(autouse=True)
def no_jwks_from_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``JWKS`` exported in the developer's shell must not change what these tests see."""
    monkeypatch.delenv("JWKS", raising=False)


KEYGEN_VARIANTS = {"default": (), "es256": ("--alg", "ES256")}


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def keygen() -> dict[str, Run]:
    """``mcp-oidc-provider keygen`` as a user runs it, each variant once, in parallel processes."""
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "mcp_oidc_provider.run.cli", "keygen", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in KEYGEN_VARIANTS.items()
    }
    runs = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=60)
        runs[name] = Run(process.returncode, stdout, stderr)
    return runs


def settings_for(upstream_issuer: str, issuer_url: str = "http://127.0.0.1:9") -> ProviderSettings:
    return ProviderSettings(
        issuer_url=issuer_url,
        upstream=UpstreamSettings(issuer=upstream_issuer, client_id=DEV_CLIENT_ID, client_secret=DEV_CLIENT_SECRET),
    )


async def served_jwks(harness: Harness) -> dict[str, Any]:
    response = await harness.http.get(harness.base + "/jwks")
    assert response.status_code == 200, response.text
    return response.json()


# keygen


def test_keygen_prints_a_private_rsa_jwks_on_one_line(keygen: dict[str, Run]) -> None:
    result = keygen["default"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1
    jwks = json.loads(result.stdout)
    assert list(jwks) == ["keys"] and len(jwks["keys"]) == 1
    key = jwks["keys"][0]
    assert key["kty"] == "RSA"
    assert key["alg"] == "RS256"
    assert key["use"] == "sig"
    assert key["kid"]
    assert {"n", "e", "d", "p", "q"} <= set(key)


def test_keygen_pretty_prints_indented_multi_line_json(
    keygen: dict[str, Run], capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process (the subprocess path is covered above): same entry point, one interpreter start less.
    assert main(["keygen", "--pretty"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) > 3
    assert lines[0] == "{" and lines[1].startswith("  ")
    key = json.loads(out)["keys"][0]
    assert key["alg"] == "RS256" and "d" in key
    # Every run makes a new key.
    assert key["kid"] != json.loads(keygen["default"].stdout)["keys"][0]["kid"]


def test_keygen_with_es256_gives_a_private_ec_p256_key(keygen: dict[str, Run]) -> None:
    result = keygen["es256"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    (key,) = json.loads(result.stdout)["keys"]
    assert key["kty"] == "EC"
    assert key["crv"] == "P-256"
    assert key["alg"] == "ES256"
    assert key["use"] == "sig"
    assert key["kid"]
    assert {"x", "y", "d"} <= set(key)


def test_keygen_refuses_an_algorithm_it_cannot_sign_with(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["keygen", "--alg", "HS256"])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "HS256" in captured.err


# a configured JWKS


@pytest.mark.parametrize(("variant", "alg"), [("default", "RS256"), ("es256", "ES256")])
async def test_a_keygen_jwks_in_the_environment_signs_tokens_and_only_its_public_half_is_published(
    dev_idp: str, monkeypatch: pytest.MonkeyPatch, keygen: dict[str, Run], variant: str, alg: str
) -> None:
    printed = keygen[variant]
    assert printed.returncode == 0, printed.stderr
    (configured,) = json.loads(printed.stdout)["keys"]
    monkeypatch.setenv("JWKS", printed.stdout)

    async with integrated_server(dev_idp) as harness:
        published = await served_jwks(harness)
        assert [k["kid"] for k in published["keys"]] == [configured["kid"]]
        (public,) = published["keys"]
        assert not PRIVATE_MEMBERS & set(public), public
        assert {k: v for k, v in configured.items() if k not in PRIVATE_MEMBERS} == public

        _, tokens = await harness.login_and_redeem()
        access_token = tokens["access_token"]
        assert pyjwt.get_unverified_header(access_token)["kid"] == configured["kid"]
        # Anyone holding only the published key can verify what the server signs.
        claims = pyjwt.decode(
            access_token,
            pyjwt.PyJWK(public).key,
            algorithms=[alg],
            audience=harness.mcp_url,
            issuer=harness.provider.issuer,
        )
        assert claims["sub"] == "alice"

        # The configured private key is never copied into the store.
        stored = await harness.store.get("signing", collection="mcp-oidc-keys")
        assert stored is not None
        assert configured["d"] not in json.dumps(stored)


async def test_a_jwks_argument_is_used_in_preference_to_the_environment(
    dev_idp: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env, from_argument = generate_jwks(), generate_jwks("ES256")
    monkeypatch.setenv("JWKS", json.dumps(from_env))
    provider = OIDCProvider(settings_for(dev_idp), MemoryStore(), jwks=from_argument)
    try:
        published = (await provider.context()).keys.public_jwks()
    finally:
        await provider.aclose()
    assert [k["kid"] for k in published["keys"]] == [from_argument["keys"][0]["kid"]]
    assert published["keys"][0]["kty"] == "EC"
    assert not PRIVATE_MEMBERS & set(published["keys"][0])


async def test_every_key_of_a_configured_jwks_is_published_and_the_first_one_signs(dev_idp: str) -> None:
    current, previous = generate_jwks()["keys"][0], generate_jwks("ES256")["keys"][0]
    provider = OIDCProvider(settings_for(dev_idp), MemoryStore(), jwks={"keys": [current, previous]})
    try:
        keys = (await provider.context()).keys
    finally:
        await provider.aclose()
    assert [k["kid"] for k in keys.public_jwks()["keys"]] == [current["kid"], previous["kid"]]
    assert all(not PRIVATE_MEMBERS & set(k) for k in keys.public_jwks()["keys"])
    signed = keys.sign({"sub": "x"}, "at+jwt")
    assert pyjwt.get_unverified_header(signed)["kid"] == current["kid"]


# keys kept in the store


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A unique collection prefix in Redis db 7; every key under it is deleted afterwards."""
    prefix = f"test-keys-{uuid.uuid4().hex}"
    raw = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await raw.ping()
    except (aioredis.ConnectionError, OSError):
        await raw.aclose()
        pytest.fail("the tests need Redis on 127.0.0.1:6379")
    try:
        yield prefix
    finally:
        async for key in raw.scan_iter(match=f"{prefix}__*"):
            await raw.delete(key)
        await raw.aclose()


StoreFactory = Callable[[], AsyncKeyValue]


@pytest.fixture(params=["disk", "redis"])
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Makes independent store objects on one backing store, as separate processes would."""
    if request.param == "disk":
        return lambda: DiskStore(directory=str(tmp_path / "store"))
    prefix = request.getfixturevalue("redis_prefix")
    return lambda: PrefixCollectionsWrapper(store_from_url(REDIS_URL), prefix)


async def test_without_a_jwks_a_restart_and_a_replica_on_the_same_store_publish_the_same_key(
    dev_idp: str, shared_backend: StoreFactory
) -> None:
    async with integrated_server(dev_idp, store=shared_backend()) as first:
        first_jwks = await served_jwks(first)
        async with integrated_server(dev_idp, store=shared_backend()) as replica:
            assert await served_jwks(replica) == first_jwks
    async with integrated_server(dev_idp, store=shared_backend()) as restarted:
        assert await served_jwks(restarted) == first_jwks
    assert len(first_jwks["keys"]) == 1
    assert not PRIVATE_MEMBERS & set(first_jwks["keys"][0])


async def test_without_a_jwks_providers_on_different_stores_use_different_keys(dev_idp: str) -> None:
    one, other = OIDCProvider(settings_for(dev_idp), MemoryStore()), OIDCProvider(settings_for(dev_idp), MemoryStore())
    try:
        one_kid = (await one.context()).keys.public_jwks()["keys"][0]["kid"]
        other_kid = (await other.context()).keys.public_jwks()["keys"][0]["kid"]
    finally:
        await one.aclose()
        await other.aclose()
    assert one_kid != other_kid


async def test_a_token_minted_by_one_replica_is_accepted_by_another_on_the_same_store(
    dev_idp: str, shared_backend: StoreFactory
) -> None:
    async with integrated_server(dev_idp, store=shared_backend()) as first:
        client, tokens = await first.login_and_redeem()
        access_token = tokens["access_token"]
        # Replicas behind one load balancer share the issuer URL and the store, nothing else.
        replica = OIDCProvider(first.provider.settings, shared_backend())
        stranger = OIDCProvider(first.provider.settings, MemoryStore())
        try:
            accepted = await replica.load_access_token(access_token)
            assert accepted is not None
            assert accepted.subject == "alice"
            assert accepted.client_id == client.client_id
            assert await stranger.load_access_token(access_token) is None

            # The seed for derived client secrets is shared too: the client authenticates anywhere.
            registered = await replica.get_client(client.client_id)
            assert registered is not None
            assert client.client_secret and registered.client_secret == client.client_secret
        finally:
            await replica.aclose()
            await stranger.aclose()


async def test_a_refresh_token_issued_before_a_restart_still_works_after_it(dev_idp: str, tmp_path: Path) -> None:
    directory = str(tmp_path / "store")
    async with integrated_server(dev_idp, store=DiskStore(directory=directory)) as before:
        client, tokens = await before.login_and_redeem()
        settings = before.provider.settings
    # Same issuer URL, same store, new process: the client keeps working without logging in again.
    restarted = OIDCProvider(settings, DiskStore(directory=directory))
    try:
        registered = await restarted.get_client(client.client_id)
        assert registered is not None
        refresh = await restarted.load_refresh_token(registered, tokens["refresh_token"])
        assert refresh is not None
        fresh = await restarted.exchange_refresh_token(registered, refresh, [])
        assert await restarted.load_access_token(fresh.access_token) is not None
    finally:
        await restarted.aclose()


# invalid key sets


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json at all", "not valid JSON"),
        ('{"kid": "x"}', '"keys" array'),
        ('[{"kty": "RSA"}]', '"keys" array'),
    ],
)
def test_a_jwks_environment_variable_that_is_not_a_key_set_is_refused_when_the_configuration_is_read(
    dev_idp: str, monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("JWKS", value)
    with pytest.raises(ConfigurationError, match="JWKS") as raised:
        OIDCProvider(settings_for(dev_idp), MemoryStore(), jwks=load_env_config().jwks)
    assert message in str(raised.value)


def _public_only() -> dict[str, Any]:
    key = generate_jwks()["keys"][0]
    return {"keys": [{k: v for k, v in key.items() if k not in PRIVATE_MEMBERS}]}


def _with(**changes: Any) -> dict[str, Any]:
    key = generate_jwks()["keys"][0]
    for name, value in changes.items():
        if value is None:
            key.pop(name)
        else:
            key[name] = value
    return {"keys": [key]}


def _two_keys_one_kid() -> dict[str, Any]:
    first = generate_jwks()["keys"][0]
    return {"keys": [first, *_with(kid=first["kid"])["keys"]]}


def _symmetric() -> dict[str, Any]:
    return {"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "alg": "HS256", "kid": "hmac"}]}


@pytest.mark.parametrize(
    ("make_jwks", "message"),
    [
        (lambda: {"keys": []}, "no keys|not a valid"),
        (lambda: {}, "not a valid"),
        (lambda: {"keys": [{"kty": "RSA", "kid": "broken"}]}, "not a valid"),
        (_public_only, "private"),
        (_symmetric, "private RSA or EC"),
        (lambda: _with(alg="RS384"), "RS256.*ES256"),
        (lambda: _with(alg=None), "RS256.*ES256"),
        (lambda: _with(alg="ES256"), "RSA with alg RS256"),
        (_two_keys_one_kid, "same kid"),
    ],
    ids=[
        "empty",
        "no-keys-member",
        "malformed-key",
        "public-only",
        "symmetric",
        "other-alg",
        "no-alg",
        "alg-for-other-key-type",
        "duplicate-kid",
    ],
)
async def test_an_unusable_jwks_argument_fails_start_with_a_clear_configuration_error(
    dev_idp: str, make_jwks: Callable[[], dict[str, Any]], message: str
) -> None:
    jwks = make_jwks()
    provider = OIDCProvider(settings_for(dev_idp), MemoryStore(), jwks=jwks)
    try:
        with pytest.raises(ConfigurationError, match="JWKS") as raised:
            await provider.start()
    finally:
        await provider.aclose()
    assert re.search(message, str(raised.value))
    # The message names the problem, never the key material.
    for key in jwks.get("keys", []):
        for member in PRIVATE_MEMBERS & set(key):
            assert key[member] not in str(raised.value)


async def test_a_configured_key_without_kid_is_published_under_its_rfc7638_thumbprint(dev_idp: str) -> None:
    jwks = _with(kid=None)
    thumbprint = RSAKey.import_key(jwks["keys"][0]).thumbprint()
    provider = OIDCProvider(settings_for(dev_idp), MemoryStore(), jwks=jwks)
    try:
        keys = (await provider.context()).keys
    finally:
        await provider.aclose()
    assert [k["kid"] for k in keys.public_jwks()["keys"]] == [thumbprint]
    assert pyjwt.get_unverified_header(keys.sign({"sub": "x"}, "at+jwt"))["kid"] == thumbprint


async def test_a_public_only_jwks_in_the_environment_fails_start(dev_idp: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWKS", json.dumps(_public_only()))
    provider = OIDCProvider(settings_for(dev_idp), MemoryStore(), jwks=load_env_config().jwks)
    try:
        with pytest.raises(ConfigurationError, match="private"):
            await provider.start()
    finally:
        await provider.aclose()


async def test_replicas_starting_together_on_an_empty_store_agree_on_one_signing_key(dev_idp: str) -> None:
    import asyncio

    shared = MemoryStore()
    replicas = [OIDCProvider(settings_for(dev_idp), shared) for _ in range(3)]
    try:
        await asyncio.gather(*(replica.start() for replica in replicas))
        published = [(await replica.context()).keys.public_jwks() for replica in replicas]
    finally:
        for replica in replicas:
            await replica.aclose()
    assert published[0]["keys"]
    assert published[1] == published[0] and published[2] == published[0]


def test_secrets_prints_a_secret_key_and_an_encryption_key_the_server_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mcp_oidc_provider.crypto.sealing import Sealer, SealError
    from mcp_oidc_provider.run.env import secret_key_from_env

    assert main(["secrets"]) == 0
    values = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert set(values) == {"SECRET_KEY", "ENCRYPTION_KEYS"}
    seed = secret_key_from_env({"SECRET_KEY": values["SECRET_KEY"]})
    assert seed is not None and len(seed) == 32
    sealer = Sealer.from_text(values["ENCRYPTION_KEYS"])
    assert sealer.open(sealer.seal(b"x")) == b"x"
    # Rotation: a new key first, the old one still opens what it sealed.
    from cryptography.fernet import Fernet

    rotated = Sealer.from_text(f"{Fernet.generate_key().decode()},{values['ENCRYPTION_KEYS']}")
    assert rotated.open(sealer.seal(b"old")) == b"old"
    with pytest.raises(SealError):  # the new key seals; the old alone cannot open it
        sealer.open(rotated.seal(b"new"))


async def test_a_configured_secret_key_never_reaches_the_store(dev_idp: str) -> None:
    import base64

    store = MemoryStore()
    secret = b"s" * 32
    provider = OIDCProvider(settings_for(dev_idp), store, secret_key=secret)
    try:
        await provider.start()
    finally:
        await provider.aclose()
    stored = await store.get("signing", collection="mcp-oidc-keys")
    assert stored is not None
    assert base64.urlsafe_b64decode(stored["secret"]) != secret
    assert base64.urlsafe_b64encode(secret).decode().rstrip("=") not in str(stored)
