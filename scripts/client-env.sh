#!/usr/bin/env bash
# Prepares the real-client environment of the interop tests (tests/tests/real_clients.rs):
# a virtualenv at the repository root, `.venv`, holding PyPI `rocketmq==0.4.4` — messense's
# ctypes wrapper whose wheel bundles the C++ client `librocketmq.so`
# (spec/wire-protocol.md §10).
#
# Idempotent: an existing `.venv` that already imports `rocketmq` is left alone. Needs no
# stdin. The last line of output is the interpreter to export as FERROCKET_PYTHON:
#
#   export FERROCKET_PYTHON="$(scripts/client-env.sh | tail -n 1)"
set -euo pipefail
cd "$(dirname "$0")/.."

venv="$PWD/.venv"
python="$venv/bin/python"
package="rocketmq==0.4.4"

if [[ ! -x "$python" ]]; then
  echo "creating $venv" >&2
  python3 -m venv "$venv" </dev/null >&2
fi

if "$python" -c 'import rocketmq.client' </dev/null >/dev/null 2>&1; then
  echo "$package already installed in $venv" >&2
else
  echo "installing $package into $venv" >&2
  "$python" -m pip install --quiet --no-input "$package" </dev/null >&2
  "$python" -c 'import rocketmq.client' </dev/null
fi

echo "$python"
