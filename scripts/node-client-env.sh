#!/usr/bin/env bash
# Prepares the Node.js real-client environment of the interop tests
# (tests/tests/node_clients.rs): tests/clients/node/node_modules holding npm `ali-ons@3.12.0`,
# a pure-JavaScript RocketMQ 4.x remoting client, and `urllib` 2.x, its mandatory HTTP client
# (spec/wire-protocol.md §10), exactly as pinned by tests/clients/node/package-lock.json.
#
# Idempotent: an install that already resolves both packages at the locked versions is left
# alone; otherwise `npm ci` reinstalls from the lock file. Needs no stdin. The last line of
# output is the node_modules directory the test uses:
#
#   scripts/node-client-env.sh | tail -n 1
set -euo pipefail
cd "$(dirname "$0")/../tests/clients/node"

modules="$PWD/node_modules"

# Prints nothing and succeeds when node_modules holds what the lock file pins.
installed() {
  node - >/dev/null 2>&1 <<'EOF'
const lock = require('./package-lock.json');
for (const name of ['ali-ons', 'urllib']) {
  const locked = lock.packages[`node_modules/${name}`];
  const present = require(`./node_modules/${name}/package.json`);
  if (!locked || present.version !== locked.version) {
    process.exit(1);
  }
  require(name);
}
EOF
}

if installed; then
  echo "ali-ons and urllib already installed in $modules" >&2
else
  echo "installing ali-ons@3.12.0 and urllib@2 into $modules" >&2
  npm ci --no-audit --no-fund --loglevel=error </dev/null >&2
  installed || {
    echo "npm ci finished but node_modules does not match package-lock.json" >&2
    exit 1
  }
fi

echo "$modules"
