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

BENCH_NAME=sync
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export RIG_DIR="${RIG_DIR:-$ROOT/.run/bench-sync}"
RESULTS="${RESULTS:-$ROOT/bench/SYNC_RESULTS.md}"
export BENCH_OBJECTS="${BENCH_OBJECTS:-10000}"
export BENCH_OBJECT_BYTES="${BENCH_OBJECT_BYTES:-1024}"
export BENCH_LARGE_MIB="${BENCH_LARGE_MIB:-2048}"

bench_need_rclone

if [ -z "${BENCH_BRIDGE_BIN:-}" ]; then
    say "building the service (release)"
    cargo build --release --bin gcp-aws-bridge
    export BENCH_BRIDGE_BIN="$ROOT/target/release/gcp-aws-bridge"
fi

bench_rig_up
LOG="$RIG_DIR/bench-sync.log"
bench_run sync_bench:: "$LOG"
bench_write "$RESULTS" "$LOG" "Sync and part-task benchmark" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, rclone $(rclone_version);" \
    "$BENCH_OBJECTS objects of $BENCH_OBJECT_BYTES bytes, one object of $BENCH_LARGE_MIB MiB;" \
    "fake-gcs-server and moto of the rig (moto answers about 600 requests/s)."
