#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run) and what a developer runs before pushing.
#
#   formatting · clippy -D warnings in the normal and the simulated (--cfg madsim) build ·
#   rustdoc with -D warnings ·
#   every test in both builds (fuzz-input replay included) · the simulation tests again with
#   madsim's determinism self-check and over many seeds · the simulation scenarios (named and
#   swarm) over a seed range, and their determinism check
#
# The simulated build keeps its own target dir (target/sim) so switching never rebuilds.
# Ends with one line "N passed, N failed" summing every cargo test run.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
SIM_FLAGS="--cfg madsim"
log=$(mktemp)

# On failure, the free disk and memory are printed last, where a log cut short still shows
# them: a full disk fails a build with nothing clearer than a linker error.
on_exit() {
  local status=$?
  rm -f "$log"
  if [[ $status -ne 0 ]]; then
    printf '\n==> failed with exit %s; free disk and memory now:\n' "$status"
    df -h . "${TMPDIR:-/tmp}" || true
    free -m || true
  fi
}
trap on_exit EXIT

step() { printf '\n==> %s\n' "$*"; }

# Runs cargo with the simulator cfg and its own target dir.
sim() { RUSTFLAGS="$SIM_FLAGS" RUSTDOCFLAGS="$SIM_FLAGS" CARGO_TARGET_DIR=target/sim "$@"; }

# Runs a cargo test command, echoing its output and keeping it for the summary.
run_tests() { "$@" 2>&1 | tee -a "$log"; }

step "rustfmt"
cargo fmt --all --check

step "clippy (tokio build)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "clippy (madsim build)"
sim cargo clippy --workspace --all-targets --locked -- -D warnings

step "rustdoc (every intra-doc link resolves, no broken HTML)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked -q

step "real-client environment (PyPI rocketmq 0.4.4, the C++ client, in .venv)"
FERROCKET_PYTHON="$(./scripts/client-env.sh | tail -n 1)"
export FERROCKET_PYTHON

step "real-client environment (npm ali-ons 3.12.0, the JavaScript client, in tests/clients/node)"
./scripts/node-client-env.sh

step "tests (tokio build: unit, golden, property, loopback, disk, fuzz-input replay, real clients)"
cargo build --locked --bins
run_tests cargo test --workspace --locked

step "tests (madsim build: the same suite plus the simulation tests)"
run_tests sim cargo test --workspace --locked

step "simulation determinism self-check (each seed run twice, traces compared)"
for seed in 1 2 3; do
  MADSIM_TEST_SEED=$seed MADSIM_TEST_CHECK_DETERMINISM=1 run_tests sim cargo test --locked -p ferrocket-tests
done

step "simulation seed sweep"
MADSIM_TEST_NUM="${SIM_SEEDS:-100}" run_tests sim cargo test --locked -p ferrocket-tests

step "simulation scenarios: every named scenario and a swarm plan per seed, then a determinism check"
sim cargo build --locked -q -p ferrocket-scenarios --bin scenarios
run_tests target/sim/debug/scenarios --swarm --seeds "0..${SCENARIO_SEEDS:-40}"
run_tests target/sim/debug/scenarios --swarm --seeds 0..2 --check-determinism

passed=$(grep -Eo '(test result: [a-zA-Z]+\.|scenario result:) [0-9]+ passed' "$log" | awk '{s+=$(NF-1)} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
