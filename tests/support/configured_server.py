"""The integrated example server as a process, with settings the environment cannot give yet.

Run by tests through :func:`support.net.run_process`. ``TEST_SETTINGS`` holds a JSON object of
``ProviderSettings`` fields laid over the ones :mod:`mcp_oidc_provider.run.env` built.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "fastmcp_integrated"))

from key_value.aio.protocols import AsyncKeyValue
from server import serve

from mcp_oidc_provider import ProviderSettings
from mcp_oidc_provider.run.env import EnvConfig
from mcp_oidc_provider.run.launch import run_from_env


async def serve_configured(config: EnvConfig, settings: ProviderSettings, store: AsyncKeyValue) -> None:
    overrides = json.loads(os.environ.get("TEST_SETTINGS", "{}"))
    await serve(config, ProviderSettings.model_validate({**settings.model_dump(), **overrides}), store)


if __name__ == "__main__":
    raise SystemExit(run_from_env(serve_configured))
