#!/usr/bin/env bash
# Sync and part-task throughput, beside rclone, in one run:
#   - objects/s syncing BENCH_OBJECTS (10,000) objects of BENCH_OBJECT_BYTES
#     (1 KiB) with 1, 2 and 4 service instances behind the Cloud Run front end,
#     and `rclone copy` of the same bucket with its settings for small files;
#   - MB/s of one BENCH_LARGE_MIB (2048) MiB object through part tasks on 2
#     instances, through one stream on 1 instance, and through `rclone copy`
#     with its settings for large files.
# Everything runs against the rig (fake-gcs-server, the Pub/Sub emulator,
# moto; scripts/rig-up.sh in RIG_DIR=.run/bench-sync, stopped on exit), with
# a release build of the service. rclone (Debian package) is installed with
# apt-get when missing. Prints one line per figure and writes
# bench/SYNC_RESULTS.md (RESULTS=... to write elsewhere).
#
#   bench/sync.sh
#   BENCH_OBJECTS=2000 BENCH_LARGE_MIB=512 bench/sync.sh     a quicker run
#   BENCH_BRIDGE_BIN=path/to/gcp-aws-bridge bench/sync.sh    a binary built already
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export RIG_DIR="${RIG_DIR:-$ROOT/.run/bench-sync}"
RESULTS="${RESULTS:-$ROOT/bench/SYNC_RESULTS.md}"
export BENCH_OBJECTS="${BENCH_OBJECTS:-10000}"
export BENCH_OBJECT_BYTES="${BENCH_OBJECT_BYTES:-1024}"
export BENCH_LARGE_MIB="${BENCH_LARGE_MIB:-2048}"
say() { echo "bench/sync: $*" >&2; }

if ! command -v rclone >/dev/null 2>&1; then
    say "installing rclone (Debian package)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rclone >/dev/null
fi

if [ -z "${BENCH_BRIDGE_BIN:-}" ]; then
    say "building the service (release)"
    cargo build --release --bin gcp-aws-bridge
    export BENCH_BRIDGE_BIN="$ROOT/target/release/gcp-aws-bridge"
fi

mkdir -p "$RIG_DIR"
trap '"$ROOT/scripts/rig-down.sh" >/dev/null 2>&1 || true' EXIT
"$ROOT/scripts/rig-up.sh" >"$RIG_DIR/rig-up.log" 2>&1

LOG="$RIG_DIR/bench-sync.log"
say "running (log in $LOG)"
cargo test --test integration sync_bench:: -- --ignored --nocapture --test-threads 1 2>&1 | tee "$LOG" | grep -o 'BENCH .*' || true
grep -q '^test result: ok' "$LOG" || { say "the benchmark failed; see $LOG"; exit 1; }

# The sections after the table (## ...) are kept across runs.
KEEP="$(sed -n '/^## /,$p' "$RESULTS" 2>/dev/null || true)"
{
    echo "# Sync and part-task benchmark"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, rclone $(rclone version 2>/dev/null | head -n1 | awk '{print $2}');"
    echo "$BENCH_OBJECTS objects of $BENCH_OBJECT_BYTES bytes, one object of $BENCH_LARGE_MIB MiB;"
    echo "fake-gcs-server and moto of the rig (moto answers about 600 requests/s)."
    echo
    echo "| figure | value | unit |"
    echo "|---|---:|---|"
    grep -o 'BENCH .*' "$LOG" | awk '{printf "| %s | %s | %s |\n", $2, $3, $4}'
    [ -z "$KEEP" ] || printf '\n%s\n' "$KEEP"
} >"$RESULTS"
say "wrote $RESULTS"
