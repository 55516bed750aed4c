#!/usr/bin/env bash
# Peak memory of concurrent large uploads under a buffer budget, on the local
# rig (moto with IAM auth on): COUNT (default 10) PUT /v1/objects uploads of
# SIZE_MIB (default 96) each, all at once, to a service started with
# BUFFER_BUDGET_BYTES=BUDGET_MIB MiB (default 64). Prints the answers, the
# service's peak RSS (VmHWM from /proc/PID/status) before and after, and
# checks that every upload that answered 201 landed whole and that no
# multipart upload was left open.
#
#   scripts/measure-budget.sh                   release build (cargo build --release)
#   PROFILE=dev scripts/measure-budget.sh       dev build (target/debug)
#   COUNT=20 SIZE_MIB=200 BUDGET_MIB=128 scripts/measure-budget.sh
#
# Not a test: the figure to watch is the peak RSS, which must stay near the
# idle RSS plus the budget whatever COUNT and SIZE_MIB are. An upload that
# waits more than 10 s for buffers answers 503 (a client retries it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COUNT="${COUNT:-10}"
SIZE_MIB="${SIZE_MIB:-96}"
BUDGET_MIB="${BUDGET_MIB:-64}"
cd "$ROOT"
# shellcheck source=lib/measure.sh
source "$ROOT/scripts/lib/measure.sh"

measure_setup moto
start_metadata_emulator

STAMP="$(date +%s%N)"
PREFIX="${RIG_ALLOWED_PREFIX:-allowed/}measure-budget-$STAMP/"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$WORK/object.bin"
BYTES="$(stat -c %s "$WORK/object.bin")"

start_service measure-budget S3_PREFIX="$PREFIX" \
    BUFFER_BUDGET_BYTES="$((BUDGET_MIB * 1024 * 1024))"

log "$COUNT concurrent PUTs of $SIZE_MIB MiB, budget $BUDGET_MIB MiB ($PROFILE build)"
START="$(date +%s.%N)"
up=()
for ((i = 0; i < COUNT; i++)); do
    curl -s -o "$WORK/answer-$i.json" -w '%{http_code} %{time_total}\n' \
        -X PUT -H 'content-type: application/octet-stream' -T "$WORK/object.bin" \
        "http://127.0.0.1:$PORT/v1/objects/upload-$i.bin" >"$WORK/status-$i" &
    up+=($!)
done
for p in "${up[@]}"; do wait "$p" || true; done
END="$(date +%s.%N)"
HWM="$(vm_hwm)"

# What landed, what is left open; clean-up.
LANDED="$(
    RIG_MOTO_ENDPOINT="$RIG_MOTO_ENDPOINT" RIG_ADMIN_ACCESS_KEY_ID="$RIG_ADMIN_ACCESS_KEY_ID" \
        RIG_ADMIN_SECRET_ACCESS_KEY="$RIG_ADMIN_SECRET_ACCESS_KEY" "$PY" - "$RIG_BUCKET" "$PREFIX" "$BYTES" <<'PY'
import os, sys
import boto3
bucket, prefix, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=os.environ["RIG_MOTO_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=os.environ["RIG_ADMIN_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["RIG_ADMIN_SECRET_ACCESS_KEY"])
objs = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
whole = sum(1 for o in objs if o["Size"] == size)
uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
for o in objs:
    s3.delete_object(Bucket=bucket, Key=o["Key"])
print(whole, len(objs), len(uploads))
PY
)"
read -r WHOLE OBJECTS OPEN <<<"$LANDED"

cat "$WORK"/status-* | sort | awk '{print "measure: answer " $1 " in " $2 " s"}' >&2
OK="$(cat "$WORK"/status-* | awk '$1 == 201' | wc -l)"
BUSY="$(cat "$WORK"/status-* | awk '$1 == 503' | wc -l)"
"$PY" - "$COUNT" "$SIZE_MIB" "$BUDGET_MIB" "$HWM_IDLE" "$HWM" "$START" "$END" "$OK" "$BUSY" "$WHOLE" "$OBJECTS" "$OPEN" "$PROFILE" <<'PY'
import sys
count, size, budget, idle, hwm, start, end, ok, busy, whole, objects, open_, profile = sys.argv[1:14]
secs = float(end) - float(start)
print(f"{count} concurrent PUTs of {size} MiB under BUFFER_BUDGET_BYTES={budget} MiB ({profile} build), moto with IAM auth on")
print(f"answers: {ok} x 201, {busy} x 503 (buffer budget), in {secs:.1f} s; "
      f"{whole} objects landed whole ({objects} in all); multipart uploads left open: {open_}")
print(f"peak RSS (VmHWM): {int(hwm) / 1024:.1f} MiB (idle after start: {int(idle) / 1024:.1f} MiB)")
PY
[ "$OK" = "$WHOLE" ] || {
    echo "measure: $OK uploads answered 201 but $WHOLE objects are whole" >&2
    exit 1
}
[ "$OPEN" = 0 ] || {
    echo "measure: $OPEN multipart uploads left open" >&2
    exit 1
}
