"""The authorization server alone, for MCP servers that run elsewhere (proxy mode).

    STORE_URL=redis://127.0.0.1:6379/0 RESOURCE_URLS=http://127.0.0.1:8000/mcp \
        python examples/proxy_mode/auth_server.py [--config FILE]

Same as ``mcp-oidc-provider serve``: configured from the environment or a TOML file (same
names; ``--help`` lists them all). PORT defaults to 4001. Without UPSTREAM_ISSUER an embedded
development IdP starts. SIGTERM drains requests and exits.
"""

import sys

from mcp_oidc_provider.run.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["serve", *sys.argv[1:]]))
