#!/usr/bin/env bash
# The whole test suite:
#   1. cargo fmt --check, and scripts/check-layers.py (no import cycle)
#      with its own tests (scripts/test_check_layers.py), and cargo machete
#      (no unused dependency; cargo-machete is installed when missing)
#   2. cargo clippy --all-targets -- -D warnings    (while the rig starts)
#   3. the rig: moto, the Pub/Sub emulator and fake-gcs-server
#      (scripts/rig-up.sh, in $RIG_DIR = .run/test, stopped again on exit)
#   4. deploy/check.sh: fmt, hadolint, checkov, terraform validate, terraform
#      apply of the AWS module against moto, the trust-policy test
#      (while the tests build); outputs in $RIG_DIR/tf-outputs.json; and
#      scripts/test-clients.sh, which installs the real AWS clients of the
#      credential-server tests (AWS CLI, boto3, the JavaScript SDK)
#   5. the Rust tests: cargo nextest run --workspace (cargo-nextest is
#      installed when missing), with RIG_DIR and TF_OUTPUTS_FILE exported
#
#   scripts/test.sh [extra arguments for the test runner, e.g. a filter]
#
# Every step runs even when an earlier one failed (the tests need the rig,
# though). Ends with one line per step and a summary; exits non-zero when any
# step failed. Needs no terminal.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

# A rig of its own, beside a developer's .run.
export RIG_DIR="$ROOT/.run/test"
export TF_OUTPUTS_FILE="$RIG_DIR/tf-outputs.json"
# Tests that need the rig fail, rather than skip, when it is missing.
export RIG_REQUIRED=1
LOGS="$RIG_DIR/logs"
mkdir -p "$LOGS"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

T0=$SECONDS
steps=()
failures=0
step_result() { # step_result NAME RC SECONDS
    if [ "$2" -eq 0 ]; then
        steps+=("PASS $1 (${3}s)")
    else
        steps+=("FAIL $1 (${3}s, exit $2)")
        failures=$((failures + 1))
    fi
    echo "test.sh: ${steps[-1]}"
}
banner() { printf '\n=== %s ===\n' "$*"; }

rig_pid=""
cleanup() {
    local rc=$?
    if [ -n "$rig_pid" ]; then
        wait "$rig_pid" 2>/dev/null
    fi
    "$ROOT/scripts/rig-down.sh" >>"$LOGS/rig-down.log" 2>&1
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stand-ins left over from an interrupted run: start from a clean rig.
"$ROOT/scripts/rig-down.sh" 2>/dev/null
rm -f "$TF_OUTPUTS_FILE"

# --- 1. formatting ---------------------------------------------------------
banner "cargo fmt --check"
t=$SECONDS
cargo fmt --all --check
step_result "cargo fmt --check" $? $((SECONDS - t))

banner "module layers (scripts/check-layers.py)"
t=$SECONDS
python3 "$ROOT/scripts/check-layers.py" &&
    python3 "$ROOT/scripts/test_check_layers.py"
step_result "module layers" $? $((SECONDS - t))

banner "cargo machete (no unused dependency)"
t=$SECONDS
if ! command -v cargo-machete >/dev/null 2>&1; then
    echo "cargo-machete is missing: cargo install cargo-machete --locked"
    cargo install cargo-machete --locked
fi
cargo machete
step_result "cargo machete" $? $((SECONDS - t))

# --- 2. clippy, while the rig starts -----------------------------------------
rig_t=$SECONDS
"$ROOT/scripts/rig-up.sh" </dev/null >"$LOGS/rig-up.log" 2>&1 &
rig_pid=$!

banner "cargo clippy --all-targets -- -D warnings"
t=$SECONDS
cargo clippy --workspace --all-targets -- -D warnings
step_result "cargo clippy" $? $((SECONDS - t))

# --- 3. the rig ----------------------------------------------------------------
banner "rig (scripts/rig-up.sh, RIG_DIR=$RIG_DIR)"
wait "$rig_pid"
rig_rc=$?
rig_pid=""
sed 's/^/    /' "$LOGS/rig-up.log"
step_result "rig up" $rig_rc $((SECONDS - rig_t))

if [ $rig_rc -eq 0 ]; then
    # --- 4. deployment checks, while the tests build ---------------------------
    deploy_t=$SECONDS
    # The endpoint and admin keys come from $RIG_DIR/rig.env.
    "$ROOT/deploy/check.sh" </dev/null >"$LOGS/deploy-check.log" 2>&1 &
    deploy_pid=$!
    clients_t=$SECONDS
    "$ROOT/scripts/test-clients.sh" </dev/null >"$LOGS/test-clients.log" 2>&1 &
    clients_pid=$!

    # cargo-nextest runs every test in a process of its own, which the
    # tests that set process environment variables rely on.
    if ! command -v cargo-nextest >/dev/null 2>&1; then
        banner "cargo install cargo-nextest (missing)"
        cargo install cargo-nextest --locked
    fi
    build=(cargo nextest run --workspace --no-run)
    tests=(cargo nextest run --workspace --no-fail-fast)
    banner "build the tests: ${build[*]}"
    t=$SECONDS
    "${build[@]}"
    build_rc=$?
    step_result "build tests" $build_rc $((SECONDS - t))

    banner "deploy/check.sh"
    wait "$deploy_pid"
    deploy_rc=$?
    cat "$LOGS/deploy-check.log"
    step_result "deploy/check.sh" $deploy_rc $((SECONDS - deploy_t))

    banner "scripts/test-clients.sh"
    wait "$clients_pid"
    clients_rc=$?
    sed 's/^/    /' "$LOGS/test-clients.log"
    step_result "test clients (AWS CLI, boto3, JavaScript SDK)" $clients_rc $((SECONDS - clients_t))

    # --- 5. the tests ------------------------------------------------------------
    if [ $build_rc -eq 0 ]; then
        banner "tests: ${tests[*]} $*"
        t=$SECONDS
        "${tests[@]}" "$@"
        step_result "tests" $? $((SECONDS - t))
    fi
else
    echo "test.sh: the rig did not start; deployment checks and tests need it" >&2
    for c in moto pubsub gcs; do
        [ -s "$LOGS/$c.log" ] && { echo "--- $LOGS/$c.log (last lines)"; tail -n 20 "$LOGS/$c.log"; }
    done
    step_result "deploy/check.sh (not run)" 1 0
    step_result "tests (not run)" 1 0
fi

# Stop the rig before the summary, so that the summary closes the output
# (the EXIT trap stops it again, harmlessly, and on any early exit).
"$ROOT/scripts/rig-down.sh" 2>&1 | sed 's/^/    /'

banner "summary"
printf '%s\n' "${steps[@]}"
total=${#steps[@]}
echo "test.sh: $((total - failures)) of $total steps passed, $failures failed, in $((SECONDS - T0))s"
[ $failures -eq 0 ]
