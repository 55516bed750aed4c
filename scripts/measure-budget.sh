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
RIG_DIR="${RIG_DIR:-$ROOT/.run}"
PROFILE="${PROFILE:-release}"
COUNT="${COUNT:-10}"
SIZE_MIB="${SIZE_MIB:-96}"
BUDGET_MIB="${BUDGET_MIB:-64}"
cd "$ROOT"

log() { echo "measure: $*" >&2; }

scripts/rig-up.sh moto >&2
# shellcheck disable=SC1091
source "$RIG_DIR/rig.env"
# shellcheck source=../rig/venv.sh
source "$ROOT/rig/venv.sh"
PY="$RIG_PYTHON"

case "$PROFILE" in
release)
    cargo build --release --bin gcp-aws-bridge >&2
    BIN="$ROOT/target/release/gcp-aws-bridge"
    ;;
dev)
    cargo build --workspace --all-targets >&2
    BIN="$ROOT/target/debug/gcp-aws-bridge"
    ;;
*)
    echo "PROFILE must be release or dev" >&2
    exit 2
    ;;
esac
cargo build -p bridge-testkit --bin metadata-emulator >&2
EMU_BIN="$ROOT/target/debug/metadata-emulator"

WORK="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_line() {
    local file="$1" pattern="$2" secs="$3" i
    for ((i = 0; i < secs * 10; i++)); do
        grep -q "$pattern" "$file" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "measure: no '$pattern' in $file after ${secs}s:" >&2
    cat "$file" >&2
    return 1
}

"$EMU_BIN" >"$WORK/emu.out" 2>"$WORK/emu.err" &
pids+=($!)
wait_line "$WORK/emu.out" '^READY ' 20
META_HOST="$(sed -n 's/^READY //p' "$WORK/emu.out" | head -1)"

STAMP="$(date +%s%N)"
PREFIX="${RIG_ALLOWED_PREFIX:-allowed/}measure-budget-$STAMP/"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$WORK/object.bin"
BYTES="$(stat -c %s "$WORK/object.bin")"

PORT="$(free_port)"
env -i PATH="$PATH" PORT="$PORT" RUST_LOG=info \
    TARGET_AUDIENCE=sts.amazonaws.com \
    AWS_ROLE_ARN="$RIG_ROLE_ARN" AWS_ROLE_SESSION_NAME=measure-budget \
    AWS_REGION="${RIG_AWS_REGION:-us-east-1}" AWS_ENDPOINT_URL="$RIG_MOTO_ENDPOINT" \
    S3_FORCE_PATH_STYLE=true S3_BUCKET="$RIG_BUCKET" S3_PREFIX="$PREFIX" \
    GCE_METADATA_HOST="$META_HOST" ID_TOKEN_SOURCE=metadata AUTH_MODE=none \
    BUFFER_BUDGET_BYTES="$((BUDGET_MIB * 1024 * 1024))" \
    "$BIN" >"$WORK/service.log" 2>&1 &
SVC=$!
pids+=("$SVC")
for ((i = 0; i < 200; i++)); do
    curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    kill -0 "$SVC" 2>/dev/null || {
        cat "$WORK/service.log" >&2
        exit 1
    }
    sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || {
    echo "measure: the service is not ready:" >&2
    cat "$WORK/service.log" >&2
    exit 1
}
HWM_IDLE="$(awk '/^VmHWM/ {print $2}' "/proc/$SVC/status")"

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
HWM="$(awk '/^VmHWM/ {print $2}' "/proc/$SVC/status")"

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
