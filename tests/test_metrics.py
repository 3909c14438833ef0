"""Prometheus metrics on their own port, and audit events as JSON lines.

The counters are scraped over HTTP, as Prometheus would, around a real login, a refresh and a
replayed refresh token; the JSON lines are parsed and searched for every secret of the run.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from key_value.aio.stores.redis import RedisStore
from prometheus_client.parser import text_string_to_metric_families
from support.harness import integrated_server
from support.hostile_idp import HostileIdP
from support.net import free_port, run_process

from mcp_oidc_provider import ProviderSettings
from mcp_oidc_provider.core.audit import logger as audit_logger
from mcp_oidc_provider.core.audit_json import use_json_audit_lines
from mcp_oidc_provider.run.devidp import DEV_CLIENT_ID, DEV_CLIENT_SECRET
from mcp_oidc_provider.store.instrumented import InstrumentedStore
from mcp_oidc_provider.web.metrics import AuditMetricsHandler, BearerFailureHandler, start_metrics_server

SERVER = Path(__file__).parent / "support" / "configured_server.py"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def metrics_url() -> Iterator[str]:
    port = free_port()
    level = audit_logger.level
    server = start_metrics_server(port)
    yield f"http://127.0.0.1:{port}/metrics"
    server.shutdown()
    # Leave logging as the other test modules expect it.
    for logger in (audit_logger, logging.getLogger("mcp_oidc_provider.bearer")):
        for handler in list(logger.handlers):
            if isinstance(handler, (AuditMetricsHandler, BearerFailureHandler)):
                logger.removeHandler(handler)
    audit_logger.setLevel(level)


def scrape(url: str) -> Samples:
    response = httpx2.get(url, timeout=5)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_a_login_a_refresh_and_a_replayed_refresh_token_move_the_counters(
    idp: HostileIdP, metrics_url: str
) -> None:
    before = scrape(metrics_url)
    async with integrated_server(
        idp.issuer, client_id=idp.client_id, client_secret="s", metrics_port=1, refresh_reuse_grace_seconds=0
    ) as server:
        client, tokens = await server.warm_login()
        refreshed = await server.token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        assert refreshed.status_code == 200, refreshed.text
        replayed = await server.token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        assert replayed.status_code == 400
    after = scrape(metrics_url)
    assert moved(before, after, "mcp_oidc_logins_started_total") == 1
    assert moved(before, after, "mcp_oidc_logins_completed_total") == 1
    assert moved(before, after, "mcp_oidc_tokens_issued_total", grant_type="authorization_code") == 1
    assert moved(before, after, "mcp_oidc_tokens_issued_total", grant_type="refresh_token") == 1
    assert moved(before, after, "mcp_oidc_refresh_reuse_detected_total") == 1
    assert moved(before, after, "mcp_oidc_refusals_total", reason="refresh_token.reuse_detected") == 1
    assert moved(before, after, "mcp_oidc_audit_events_total", event="client.registered") == 1
    # Every store call was timed (metrics_port turns the instrumented store on).
    grants_read = moved(
        before, after, "mcp_oidc_store_operation_seconds_count", operation="get", collection="mcp-oidc-grants"
    )
    assert grants_read >= 1
    assert (
        moved(
            before,
            after,
            "mcp_oidc_store_operation_seconds_count",
            operation="delete",
            collection="mcp-oidc-refresh-tokens",
        )
        >= 1
    )
    # No metric carries a token, a client id or a subject as a label value.
    label_values = {value for _, labels in after for _, value in labels}
    for secret in (tokens["access_token"], tokens["refresh_token"], client.client_id):
        assert secret not in label_values


async def test_a_store_that_cannot_be_reached_counts_as_a_store_error(metrics_url: str) -> None:
    before = scrape(metrics_url)
    store = InstrumentedStore(RedisStore(url=f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(Exception):  # noqa: B017  (whatever the client raises: it is counted, then re-raised)
        await store.get("k", collection="mcp-oidc-grants")
    after = scrape(metrics_url)
    assert moved(before, after, "mcp_oidc_store_errors_total", operation="get", collection="mcp-oidc-grants") == 1


async def test_audit_events_as_json_lines_parse_and_carry_no_secret(idp: HostileIdP) -> None:
    stream = io.StringIO()
    level = audit_logger.level
    handler = use_json_audit_lines(stream)
    try:
        async with integrated_server(
            idp.issuer, client_id=idp.client_id, client_secret="s", refresh_reuse_grace_seconds=0
        ) as server:
            client, tokens = await server.warm_login()
            refreshed = await server.token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
            await server.token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    finally:
        audit_logger.removeHandler(handler)
        audit_logger.propagate = True
        audit_logger.setLevel(level)
    lines = stream.getvalue().splitlines()
    events = [json.loads(line) for line in lines]  # one JSON object per line
    names = [event["event"] for event in events]
    for expected in ("client.registered", "login.started", "login.completed", "token.issued", "token.refreshed"):
        assert expected in names
    assert "refresh_token.reuse_detected" in names
    for event in events:
        assert set(event) <= {
            "timestamp",
            "level",
            "event",
            "client_id",
            "grant_id",
            "subject",
            "error",
            "reason",
            "resource",
        }
        assert event["timestamp"].endswith("+00:00")
    text = stream.getvalue()
    secrets = [
        tokens["access_token"],
        tokens["refresh_token"],
        refreshed.json()["access_token"],
        refreshed.json()["refresh_token"],
        client.client_secret,
    ]
    for secret in secrets:
        assert secret and secret not in text


def test_the_example_server_serves_metrics_on_its_own_port_and_json_audit_lines_when_configured(
    dev_idp: str, tmp_path: Path
) -> None:
    port, metrics_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "PORT": str(port),
        "UPSTREAM_ISSUER": dev_idp,
        "UPSTREAM_CLIENT_ID": DEV_CLIENT_ID,
        "UPSTREAM_CLIENT_SECRET": DEV_CLIENT_SECRET,
        "TEST_SETTINGS": json.dumps({"metrics_port": metrics_port, "audit_json": True}),
    }
    log = tmp_path / "server.log"
    with run_process(SERVER, env, base + "/health", log):
        registered = httpx2.post(base + "/register", json={"redirect_uris": ["http://127.0.0.1:9/cb"]}, timeout=10)
        assert registered.status_code == 201
        metrics = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        on_main_port = httpx2.get(base + "/metrics", timeout=10)
    assert metrics[("mcp_oidc_audit_events_total", (("event", "client.registered"),))] == 1
    assert on_main_port.status_code == 404  # not on the public port
    audit_lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert [line["event"] for line in audit_lines] == ["client.registered"]
    assert audit_lines[0]["client_id"] == registered.json()["client_id"]
    assert registered.json()["client_secret"] not in log.read_text()


def test_metrics_and_json_audit_are_off_by_default() -> None:
    fields = ProviderSettings.model_fields
    assert fields["metrics_port"].default == 0
    assert fields["audit_json"].default is False
    assert fields["rate_limit_storage_url"].default is None
