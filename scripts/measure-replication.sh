#!/usr/bin/env bash
# Memory and throughput of replication from Cloud Storage, on the local rig
# (fake-gcs-server and moto with IAM auth on): one object of SIZE_MIB
# (default 1024) is uploaded to fake-gcs-server, replicated by the service
# through a Pub/Sub replicate command, and read back from S3 to compare sizes.
# Prints the service's peak RSS (VmHWM from /proc/PID/status) and the copy
# rate, then the same copy done by plain tools (curl from fake-gcs-server
# piped into boto3 upload_fileobj) for comparison.
#
#   scripts/measure-replication.sh                  release build (cargo build --release)
#   PROFILE=dev scripts/measure-replication.sh      dev build (target/debug)
#   SIZE_MIB=256 scripts/measure-replication.sh     a smaller object
#
# Not a test: moto stores every part in memory and handles a few hundred
# requests per second, so the rates say more about the stand-ins than about
# the service. The peak RSS is the figure to watch: it must stay bounded
# whatever the object size (parts of 8 MiB, 2 uploading, 1 being read).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZE_MIB="${SIZE_MIB:-1024}"
cd "$ROOT"
# shellcheck source=lib/measure.sh
source "$ROOT/scripts/lib/measure.sh"

measure_setup moto gcs
GCS="${STORAGE_EMULATOR_HOST%/}"
case "$GCS" in http://* | https://*) ;; *) GCS="http://$GCS" ;; esac
start_metadata_emulator

# The object: incompressible bytes, uploaded as one media upload.
STAMP="$(date +%s%N)"
GBUCKET="measure-$STAMP"
NAME="big/object-${SIZE_MIB}MiB.bin"
PREFIX="${RIG_ALLOWED_PREFIX:-allowed/}measure-$STAMP/"
log "writing ${SIZE_MIB} MiB of random bytes"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$WORK/object.bin"
BYTES="$(stat -c %s "$WORK/object.bin")"
curl -sf -X POST "$GCS/storage/v1/b" -H 'content-type: application/json' \
    -d "{\"name\":\"$GBUCKET\"}" >/dev/null
log "uploading to gs://$GBUCKET/$NAME (fake-gcs-server)"
curl -sf -X POST "$GCS/upload/storage/v1/b/$GBUCKET/o?uploadType=media&name=$NAME" \
    -H 'content-type: application/octet-stream' -T "$WORK/object.bin" >"$WORK/resource.json"
GENERATION="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["generation"])' "$WORK/resource.json")"
rm -f "$WORK/object.bin"

start_service measure-replication S3_PREFIX="$PREFIX" \
    STORAGE_EMULATOR_HOST="$GCS" GCS_SOURCE_BUCKETS="$GBUCKET"

DATA="$(printf '{"op":"replicate","bucket":"%s","name":"%s","generation":"%s"}' "$GBUCKET" "$NAME" "$GENERATION" | base64 -w0)"
log "replicating through the service ($PROFILE build)"
read -r STATUS SECS < <(curl -s -o "$WORK/answer.json" -w '%{http_code} %{time_total}\n' \
    -X POST "http://127.0.0.1:$PORT/pubsub" -H 'content-type: application/json' \
    -d "{\"message\":{\"data\":\"$DATA\",\"messageId\":\"measure-1\"},\"subscription\":\"projects/bridge-test/subscriptions/measure\"}")
HWM="$(vm_hwm)"
if [ "$STATUS" != 200 ]; then
    echo "measure: replication answered $STATUS: $(cat "$WORK/answer.json")" >&2
    tail -20 "$WORK/service.log" >&2
    exit 1
fi

# Plain tools: the same bytes from fake-gcs-server into S3 with boto3
# (managed multipart upload from a pipe), admin keys.
cat >"$WORK/plain.py" <<'PY'
import os, resource, sys, time
import boto3
from boto3.s3.transfer import TransferConfig
s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["RIG_MOTO_ENDPOINT"],
    region_name=os.environ.get("RIG_AWS_REGION", "us-east-1"),
    aws_access_key_id=os.environ["RIG_ADMIN_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["RIG_ADMIN_SECRET_ACCESS_KEY"],
)
start = time.monotonic()
s3.upload_fileobj(sys.stdin.buffer, os.environ["RIG_BUCKET"], sys.argv[1],
                  Config=TransferConfig(multipart_chunksize=8 * 1024 * 1024))
secs = time.monotonic() - start
head = s3.head_object(Bucket=os.environ["RIG_BUCKET"], Key=sys.argv[1])
print(secs, head["ContentLength"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
PY
log "copying with curl | boto3 upload_fileobj"
PLAIN_KEY="${PREFIX}plain/$NAME"
read -r PLAIN_SECS PLAIN_LEN PLAIN_RSS < <(
    curl -sf "$GCS/storage/v1/b/$GBUCKET/o/$("$PY" -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$NAME")?alt=media" |
        RIG_MOTO_ENDPOINT="$RIG_MOTO_ENDPOINT" RIG_AWS_REGION="${RIG_AWS_REGION:-us-east-1}" \
            RIG_ADMIN_ACCESS_KEY_ID="$RIG_ADMIN_ACCESS_KEY_ID" RIG_ADMIN_SECRET_ACCESS_KEY="$RIG_ADMIN_SECRET_ACCESS_KEY" \
            RIG_BUCKET="$RIG_BUCKET" "$PY" "$WORK/plain.py" "$PLAIN_KEY"
)

# What landed, and clean-up of both copies.
REPLICA_LEN="$(
    RIG_MOTO_ENDPOINT="$RIG_MOTO_ENDPOINT" RIG_ADMIN_ACCESS_KEY_ID="$RIG_ADMIN_ACCESS_KEY_ID" \
        RIG_ADMIN_SECRET_ACCESS_KEY="$RIG_ADMIN_SECRET_ACCESS_KEY" "$PY" - "$RIG_BUCKET" "$PREFIX" "$NAME" "$PLAIN_KEY" <<'PY'
import os, sys
import boto3
bucket, prefix, name, plain = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=os.environ["RIG_MOTO_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=os.environ["RIG_ADMIN_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["RIG_ADMIN_SECRET_ACCESS_KEY"])
h = s3.head_object(Bucket=bucket, Key=prefix + name)
print(h["ContentLength"], h["Metadata"].get("goog-generation"))
for key in (prefix + name, plain):
    s3.delete_object(Bucket=bucket, Key=key)
PY
)"
curl -s -X DELETE "$GCS/storage/v1/b/$GBUCKET/o/$("$PY" -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$NAME")" >/dev/null || true

read -r LEN GEN <<<"$REPLICA_LEN"
[ "$LEN" = "$BYTES" ] || {
    echo "measure: replica has $LEN bytes, source $BYTES" >&2
    exit 1
}
[ "$GEN" = "$GENERATION" ] || {
    echo "measure: replica generation $GEN, source $GENERATION" >&2
    exit 1
}

"$PY" - "$BYTES" "$SECS" "$HWM_IDLE" "$HWM" "$PLAIN_SECS" "$PLAIN_RSS" "$PROFILE" <<'PY'
import sys
size, secs, idle, hwm, psecs, prss, profile = sys.argv[1:8]
size, secs, psecs = int(size), float(secs), float(psecs)
mib = size / 2**20
print(f"object: {mib:.0f} MiB ({size} bytes), fake-gcs-server -> moto (IAM auth on)")
print(f"service ({profile} build): {secs:.1f} s, {size / secs / 1e6:.1f} MB/s ({mib / secs:.1f} MiB/s); "
      f"peak RSS (VmHWM) {int(hwm) / 1024:.1f} MiB (after start, before replication: {int(idle) / 1024:.1f} MiB)")
print(f"plain tools (curl | boto3 upload_fileobj, 8 MiB parts): {psecs:.1f} s, {size / psecs / 1e6:.1f} MB/s "
      f"({mib / psecs:.1f} MiB/s); python peak RSS {int(prss) / 1024:.1f} MiB")
PY
