#!/usr/bin/env bash
# Install the strict test IdP's pinned npm packages (oidc-provider) from package-lock.json.
# Idempotent: does nothing when node_modules already matches the lock file.
set -euo pipefail
cd "$(dirname "$0")"
stamp=node_modules/.package-lock.json
if [ -f "$stamp" ] && [ -f node_modules/oidc-provider/package.json ] && [ "$stamp" -nt package-lock.json ]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
