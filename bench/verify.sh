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

BENCH_NAME=verify
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export RIG_DIR="${RIG_DIR:-$ROOT/.run/bench-verify}"
RESULTS="${RESULTS:-$ROOT/bench/VERIFY_RESULTS.md}"
export BENCH_OBJECTS="${BENCH_OBJECTS:-10000}"
export BENCH_OBJECT_BYTES="${BENCH_OBJECT_BYTES:-1024}"

bench_need_rclone

BUILD=debug
if [ -n "${BENCH_BRIDGE_BIN:-}" ]; then
    BUILD="$BENCH_BRIDGE_BIN"
elif [ "${BENCH_RELEASE:-0}" = 1 ]; then
    say "building the service (release)"
    cargo build --release --bin gcp-aws-bridge
    export BENCH_BRIDGE_BIN="$ROOT/target/release/gcp-aws-bridge"
    BUILD=release
fi

bench_rig_up
LOG="$RIG_DIR/bench-verify.log"
bench_run verify_bench:: "$LOG"
bench_write "$RESULTS" "$LOG" "verify benchmark" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores (load average $(cut -d' ' -f1-3 /proc/loadavg))," \
    "gcp-aws-bridge $BUILD build, rclone $(rclone_version);" \
    "$BENCH_OBJECTS objects of $BENCH_OBJECT_BYTES bytes, fake-gcs-server and moto of the rig."
