"""One configuration, as an operator meets it: the real ``serve`` and example processes, their
exit status, their one line of stderr, how long they take to give up, and what a reverse proxy
changes for the rate limit."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx2
import pytest
from support.net import EXAMPLES, free_port, run_process, wait_until_up

from mcp_oidc_provider.run.env import provider_variables, resource_server_variables

SERVE = [sys.executable, "-m", "mcp_oidc_provider.run.cli", "serve"]
MCP_SERVER = EXAMPLES / "proxy_mode" / "mcp_server.py"
INTEGRATED = EXAMPLES / "fastmcp_integrated" / "server.py"
#: Variables a developer's shell may carry into the child and that would change its behaviour.
_OURS = {v.name for v in (*provider_variables(), *resource_server_variables())}


def run(
    command: list[str], env: Mapping[str, str], timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], float]:
    clean = {k: v for k, v in os.environ.items() if k not in _OURS}
    started = time.monotonic()
    result = subprocess.run(command, env={**clean, **env}, capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - started


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The process failed as the configuration contract says: exit 2, one line on stderr."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def start_up_cost() -> float:
    """How long the interpreter and our imports take right now, before anything is configured:
    the machine's load varies, so each timed test measures it next to its own run."""
    result, elapsed = run(SERVE, {"HOST": "0.0.0.0"})
    assert result.returncode == 2
    return elapsed


def within(elapsed: float, budget: float, start_up: float) -> bool:
    """Done within ``budget`` seconds of work, allowing start-up to run up to twice as slow again."""
    return elapsed < budget + 2 * start_up


@contextlib.contextmanager
def silent_tcp_server() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def closed_port() -> int:
    return free_port()  # bound, released: nothing listens there


# Errors name the variable the user set, and how to fix it.


def test_host_0_0_0_0_without_base_url_exits_2_with_one_line_asking_for_base_url() -> None:
    result, _ = run(SERVE, {"HOST": "0.0.0.0", "PORT": str(free_port())})
    line = one_line_error(result)
    assert "HOST=0.0.0.0 needs BASE_URL=https://" in line
    assert "issuer_url" not in line


def test_a_bad_consent_value_exits_2_with_one_line_naming_consent_and_the_allowed_values() -> None:
    result, _ = run(SERVE, {"CONSENT": "sometimes", "PORT": str(free_port())})
    line = one_line_error(result)
    assert line == "error: CONSENT must be one of always, remember, off, not 'sometimes' (environment)"


def test_a_plain_http_base_url_off_loopback_is_refused_naming_base_url() -> None:
    result, _ = run(SERVE, {"BASE_URL": "http://auth.example.com", "PORT": str(free_port())})
    line = one_line_error(result)
    assert line.startswith("error: BASE_URL=http://auth.example.com (environment): BASE_URL must use https")


def test_an_upstream_secret_is_never_echoed_in_an_error() -> None:
    env = {"UPSTREAM_ISSUER": "ftp://idp", "UPSTREAM_CLIENT_ID": "c", "UPSTREAM_CLIENT_SECRET": "hunter2-secret"}
    result, _ = run(SERVE, {**env, "PORT": str(free_port())})
    line = one_line_error(result)
    assert "UPSTREAM_ISSUER=ftp://idp" in line
    assert "hunter2-secret" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("secret_key", "says"),
    [
        ("A" * 43, "too weak"),  # 32 bytes, all zero
        ("YWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJj", "too weak"),  # "abc" repeated
        ("c2hvcnQtc2VjcmV0", "too short"),  # 12 bytes
        ("not base64url!", "must be base64url"),
        ("ZGV2ZWxvcG1lbnQtc2VjcmV0LWRldmVsb3BtZW50LXNlY3JldA==" + "+/", "must be base64url"),
    ],
)
def test_a_weak_or_non_base64url_secret_key_is_refused_at_start_up(secret_key: str, says: str) -> None:
    # Issue 8 §5: every derived secret (client secrets, cookies, sealing keys) stands on this seed.
    result, _ = run(SERVE, {"SECRET_KEY": secret_key, "PORT": str(free_port())})
    line = one_line_error(result)
    assert line.startswith("error: SECRET_KEY (environment): ")
    assert says in line
    assert "mcp-oidc-provider secrets" in line
    assert secret_key not in line


def test_the_secret_key_that_the_secrets_command_prints_is_accepted(tmp_path: Path) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "mcp_oidc_provider.run.cli", "secrets"], capture_output=True, text=True, check=True
    ).stdout
    values = dict(line.split("=", 1) for line in printed.splitlines())
    port = free_port()
    env = {**values, "PORT": str(port), "STORE_URL": f"disk://{tmp_path}"}
    with run_process(INTEGRATED, env, f"http://127.0.0.1:{port}/health"):
        pass


# One configuration: a TOML file, the environment over it, and --help generated from the fields.


def test_a_config_file_configures_serve_and_the_environment_overrides_it(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "auth.toml"
    config.write_text(f'PORT = {port}\nSCOPES = ["mcp", "files.read"]\nrate_limit_per_minute = 2\nCONSENT = "always"\n')
    env = {"RATE_LIMIT_PER_MINUTE": "3"}
    clean = {k: v for k, v in os.environ.items() if k not in _OURS}
    process = subprocess.Popen(
        [*SERVE, "--config", str(config)], env={**clean, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + "/health", None)
        metadata = httpx2.get(base + "/.well-known/oauth-authorization-server").json()
        assert metadata["scopes_supported"] == ["mcp", "files.read"]  # from the file
        statuses = [httpx2.get(base + "/authorize").status_code for _ in range(4)]
        # RATE_LIMIT_PER_MINUTE=3 from the environment beats the file's 2.
        assert [s == 429 for s in statuses] == [False, False, False, True]
    finally:
        process.terminate()
        process.wait(timeout=15)
        assert process.stderr is not None
        process.stderr.close()


def test_an_unknown_key_in_the_config_file_is_refused_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "auth.toml"
    config.write_text('TRUST_FORWARDED_FOR = true\nCONSENT = "always"\n')
    result, _ = run([*SERVE, "--config", str(config)], {"PORT": str(free_port())})
    line = one_line_error(result)
    assert "TRUST_FORWARDED_FOR (in auth.toml) is not a setting; use FORWARDED_ALLOW_IPS" in line


def test_a_config_file_that_is_not_toml_or_missing_is_refused_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("CONSENT = \n")
    line = one_line_error(run([*SERVE, "--config", str(broken)], {})[0])
    assert "broken.toml: not valid TOML" in line
    line = one_line_error(run([*SERVE, "--config", str(tmp_path / "absent.toml")], {})[0])
    assert "absent.toml: cannot read it" in line


def test_serve_help_lists_every_variable_with_its_default() -> None:
    result, _ = run([*SERVE, "--help"], {})
    assert result.returncode == 0
    for variable in provider_variables():
        assert f"  {variable.name} (" in result.stdout, variable.name
    for expected in (
        "CONSENT (always|remember|off; default: remember)",
        "RATE_LIMIT_PER_MINUTE (number; default: 60)",
        "PORT (number; default: 4001)",
        "UPSTREAM_EXTRA_AUTHORIZE_PARAMS (JSON; default: {})",
        "FORWARDED_ALLOW_IPS (list; default: none: proxy headers ignored)",
        "STORE_URL (text; default: memory://)",
    ):
        assert expected in result.stdout
    assert "ISSUER_URL" not in result.stdout and "TRUST_FORWARDED_FOR" not in result.stdout


# Stores fail fast and clearly.


def test_an_unreachable_store_exits_2_at_once_with_one_line_naming_store_url_without_its_password() -> None:
    start_up = start_up_cost()
    url = f"redis://:hunter2@127.0.0.1:{closed_port()}/0"
    result, elapsed = run(SERVE, {"STORE_URL": url, "PORT": str(free_port())})
    line = one_line_error(result)
    assert line.startswith(f"error: STORE_URL redis://:***@127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}/0: ")
    assert "cannot reach the Redis store (ConnectionRefusedError)" in line
    assert "hunter2" not in result.stderr + result.stdout
    assert within(elapsed, 1.0, start_up), (elapsed, start_up)


def test_a_store_that_accepts_and_never_answers_exits_2_at_the_deadline() -> None:
    start_up = start_up_cost()
    with silent_tcp_server() as port:
        env = {"STORE_URL": f"redis://127.0.0.1:{port}/0", "STORE_TIMEOUT_SECONDS": "1.5", "PORT": str(free_port())}
        result, elapsed = run(SERVE, env)
    line = one_line_error(result)
    assert "STORE_URL redis://127.0.0.1" in line and "did not answer within 1.5 s" in line
    assert elapsed >= 1.5  # it did wait for the store
    assert within(elapsed, 1.5 + 1.0, start_up), (elapsed, start_up)


def test_the_integrated_example_also_exits_2_on_an_unreachable_store() -> None:
    result, _ = run([sys.executable, str(INTEGRATED)], {"STORE_URL": f"redis://127.0.0.1:{closed_port()}/0"})
    assert "STORE_URL redis://127.0.0.1" in one_line_error(result)


def test_the_proxy_mode_mcp_server_without_store_url_exits_2_naming_store_url() -> None:
    result, _ = run([sys.executable, str(MCP_SERVER)], {"AUTH_ISSUER": "http://127.0.0.1:4001"})
    line = one_line_error(result)
    assert line.startswith("error: STORE_URL is required")


def test_the_proxy_mode_mcp_server_without_auth_issuer_exits_2_naming_auth_issuer() -> None:
    result, _ = run([sys.executable, str(MCP_SERVER)], {"STORE_URL": "redis://127.0.0.1:6379/12"})
    assert one_line_error(result).startswith("error: AUTH_ISSUER is required")


def test_the_proxy_mode_mcp_server_exits_2_when_its_store_is_unreachable() -> None:
    env = {"AUTH_ISSUER": "http://127.0.0.1:4001", "STORE_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    result, _ = run([sys.executable, str(MCP_SERVER)], env)
    assert "cannot reach the Redis store" in one_line_error(result)


def test_the_proxy_mode_mcp_server_says_at_start_up_that_it_has_no_keys_to_serve_with(tmp_path: Path) -> None:
    port = free_port()
    env = {"PORT": str(port), "AUTH_ISSUER": f"http://127.0.0.1:{closed_port()}", "STORE_URL": f"disk://{tmp_path}"}
    log = tmp_path / "mcp.log"
    with run_process(MCP_SERVER, env, f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp", log):
        pass
    text = log.read_text()
    assert "no signing keys: none in STORE_URL and http://127.0.0.1:" in text
    assert "no sealing key: set ENCRYPTION_KEYS or SECRET_KEY" in text


# FORWARDED_ALLOW_IPS: one setting for uvicorn's proxy headers and the rate limit.


@contextlib.contextmanager
def serve_behind_proxy(**env: str) -> Iterator[str]:
    port = free_port()
    full = {"PORT": str(port), "RATE_LIMIT_PER_MINUTE": "3", **env}
    clean = {k: v for k, v in os.environ.items() if k not in _OURS}
    process = subprocess.Popen(SERVE, env={**clean, **full}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", None)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=15)


def authorize_from(base: str, client_address: str, times: int) -> list[int]:
    # The proxy (our loopback connection) appends the address it saw, as nginx's
    # $proxy_add_x_forwarded_for does.
    headers = {"X-Forwarded-For": client_address}
    return [httpx2.get(base + "/authorize", headers=headers).status_code for _ in range(times)]


def test_behind_a_trusted_proxy_two_clients_get_separate_rate_limit_budgets() -> None:
    with serve_behind_proxy(FORWARDED_ALLOW_IPS="127.0.0.1") as base:
        first = authorize_from(base, "203.0.113.10", 4)
        second = authorize_from(base, "203.0.113.20", 3)
    assert first[-1] == 429 and 429 not in first[:3]
    assert 429 not in second  # not locked out by the first client


def test_without_forwarded_allow_ips_x_forwarded_for_is_ignored_and_cannot_evade_the_limit() -> None:
    with serve_behind_proxy() as base:
        statuses = [authorize_from(base, f"203.0.113.{i}", 1)[0] for i in range(4)]
    assert statuses[-1] == 429
