#!/usr/bin/env bash
# `gcp-aws-bridge verify` beside `rclone check`, in one run: BENCH_OBJECTS
# (10,000) objects of BENCH_OBJECT_BYTES (1 KiB) in fake-gcs-server, their
# replicas in moto (written directly, as replication writes them: CRC32C
# checksum, goog-bucket and goog-generation), then objects/s of `verify`
# (listings and one HEAD per replica) and of `rclone check` (sizes and MD5
# from the listings) of the same bucket and prefix.
# Runs against the rig (scripts/rig-up.sh in RIG_DIR=.run/bench-verify,
# stopped on exit). The service binary is the debug build the test harness
# builds, unless BENCH_BRIDGE_BIN names another (BENCH_RELEASE=1 builds and
# uses a release build). rclone (Debian package) is installed with apt-get
# when missing. Prints one line per figure and writes bench/VERIFY_RESULTS.md
# (RESULTS=... to write elsewhere).
#
#   bench/verify.sh
#   BENCH_OBJECTS=2000 bench/verify.sh          a quicker run
#   BENCH_RELEASE=1 bench/verify.sh             with a release build
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export RIG_DIR="${RIG_DIR:-$ROOT/.run/bench-verify}"
RESULTS="${RESULTS:-$ROOT/bench/VERIFY_RESULTS.md}"
export BENCH_OBJECTS="${BENCH_OBJECTS:-10000}"
export BENCH_OBJECT_BYTES="${BENCH_OBJECT_BYTES:-1024}"
say() { echo "bench/verify: $*" >&2; }

if ! command -v rclone >/dev/null 2>&1; then
    say "installing rclone (Debian package)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rclone >/dev/null
fi

BUILD=debug
if [ -n "${BENCH_BRIDGE_BIN:-}" ]; then
    BUILD="$BENCH_BRIDGE_BIN"
elif [ "${BENCH_RELEASE:-0}" = 1 ]; then
    say "building the service (release)"
    cargo build --release --bin gcp-aws-bridge
    export BENCH_BRIDGE_BIN="$ROOT/target/release/gcp-aws-bridge"
    BUILD=release
fi

mkdir -p "$RIG_DIR"
trap '"$ROOT/scripts/rig-down.sh" >/dev/null 2>&1 || true' EXIT
"$ROOT/scripts/rig-up.sh" >"$RIG_DIR/rig-up.log" 2>&1

LOG="$RIG_DIR/bench-verify.log"
say "running (log in $LOG)"
cargo test --test integration verify_bench:: -- --ignored --nocapture --test-threads 1 2>&1 | tee "$LOG" | grep -o 'BENCH .*' || true
grep -q '^test result: ok' "$LOG" || { say "the benchmark failed; see $LOG"; exit 1; }

# The sections after the table (## ...) are kept across runs.
KEEP="$(sed -n '/^## /,$p' "$RESULTS" 2>/dev/null || true)"
{
    echo "# verify benchmark"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores (load average $(cut -d' ' -f1-3 /proc/loadavg)),"
    echo "gcp-aws-bridge $BUILD build, rclone $(rclone version 2>/dev/null | head -n1 | awk '{print $2}');"
    echo "$BENCH_OBJECTS objects of $BENCH_OBJECT_BYTES bytes, fake-gcs-server and moto of the rig."
    echo
    echo "| figure | value | unit |"
    echo "|---|---:|---|"
    grep -o 'BENCH .*' "$LOG" | awk '{printf "| %s | %s | %s |\n", $2, $3, $4}'
    [ -z "$KEEP" ] || printf '\n%s\n' "$KEEP"
} >"$RESULTS"
say "wrote $RESULTS"
