#!/usr/bin/env bash
# Runs gcp-aws-bridge end to end on this machine, against local stand-ins:
#
#   moto (STS, IAM, S3) and the Pub/Sub emulator   scripts/rig-up.sh, RIG_DIR=.run/local
#   a GCE metadata server                          the test kit's metadata-emulator
#   gcp-aws-bridge                                 target/debug/gcp-aws-bridge
#
# then publishes a command to a Pub/Sub topic whose push subscription points at
# the service, and waits for the object it names to appear in S3:
#
#   {"op":"put","key":"hello.txt","body":"Hello from Pub/Sub"}
#     -> s3://bridge-test/allowed/local/hello.txt
#
# Everything it started is stopped when it exits. Logs stay in .run/local/logs.
# moto does not check the web identity token against the trust policy; the
# service's side of the exchange (token from the metadata server, unsigned
# AssumeRoleWithWebIdentity, S3 with the session credentials) is the real one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export RIG_DIR="$ROOT/.run/local"
LOGS="$RIG_DIR/logs"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
UNIQUE_ID=104857600000000000001
SA_EMAIL=bridge@bridge-test.iam.gserviceaccount.com
TOPIC=bridge-commands
SUBSCRIPTION=bridge-commands-push
KEY=hello.txt
PREFIX=allowed/local/
BODY="Hello from Pub/Sub"
WAIT_SECS=60

say() { echo "run-local: $*" >&2; }

emu_pid=""
svc_pid=""
cleanup() {
    local rc=$?
    for pid in $svc_pid $emu_pid; do
        kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    "$ROOT/scripts/rig-down.sh"
    if [ $rc -ne 0 ]; then
        say "FAILED (exit $rc); logs in $LOGS"
        [ -f "$LOGS/service.log" ] && { say "last lines of the service's log:"; tail -n 20 "$LOGS/service.log" >&2; }
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building (cargo build --workspace --bins)"
cargo build --workspace --bins

"$ROOT/scripts/rig-down.sh"
say "starting moto and the Pub/Sub emulator"
"$ROOT/scripts/rig-up.sh" moto pubsub </dev/null
# shellcheck source=/dev/null
source "$RIG_DIR/rig.env"
PY="$("$ROOT/rig/venv.sh")"

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- the metadata server -------------------------------------------------------
"$TARGET/debug/metadata-emulator" --port 0 --email "$SA_EMAIL" --unique-id "$UNIQUE_ID" \
    --project-id bridge-test </dev/null >"$LOGS/metadata-emulator.log" 2>&1 &
emu_pid=$!
metadata_host=""
for _ in $(seq 100); do
    metadata_host="$(sed -n 's/^READY //p' "$LOGS/metadata-emulator.log")"
    [ -n "$metadata_host" ] && break
    kill -0 "$emu_pid" 2>/dev/null || { cat "$LOGS/metadata-emulator.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$metadata_host" ] || { say "the metadata emulator did not start"; exit 1; }
say "metadata server on $metadata_host (service account $SA_EMAIL, unique id $UNIQUE_ID)"

# --- the service ---------------------------------------------------------------
port="$(free_port)"
service="http://127.0.0.1:$port"
env -i PATH="$PATH" HOME="${HOME:-/tmp}" RUST_LOG=info \
    PORT="$port" \
    TARGET_AUDIENCE=sts.amazonaws.com \
    AWS_ROLE_ARN="$RIG_ROLE_ARN" \
    AWS_REGION=us-east-1 \
    AWS_ENDPOINT_URL="$RIG_MOTO_ENDPOINT" \
    S3_FORCE_PATH_STYLE=true \
    S3_BUCKET="$RIG_BUCKET" \
    S3_PREFIX="$PREFIX" \
    GCE_METADATA_HOST="$metadata_host" \
    AUTH_MODE=none \
    LOG_FORMAT=text \
    "$TARGET/debug/gcp-aws-bridge" </dev/null >"$LOGS/service.log" 2>&1 &
svc_pid=$!
for i in $(seq 200); do
    curl -fsS -o /dev/null --max-time 1 "$service/healthz" 2>/dev/null && break
    kill -0 "$svc_pid" 2>/dev/null || { say "gcp-aws-bridge exited"; cat "$LOGS/service.log" >&2; exit 1; }
    [ "$i" -lt 200 ] || { say "gcp-aws-bridge did not answer /healthz"; exit 1; }
    sleep 0.1
done
say "gcp-aws-bridge listening on $service (bucket $RIG_BUCKET, prefix $PREFIX)"

# --- Pub/Sub: topic, push subscription, message ----------------------------------
ps="http://$PUBSUB_EMULATOR_HOST/v1/projects/$RIG_PUBSUB_PROJECT"
curl -fsS -o /dev/null -X PUT "$ps/topics/$TOPIC"
curl -fsS -o /dev/null -X PUT "$ps/subscriptions/$SUBSCRIPTION" -H 'Content-Type: application/json' \
    -d "{\"topic\":\"projects/$RIG_PUBSUB_PROJECT/topics/$TOPIC\",\"pushConfig\":{\"pushEndpoint\":\"$service/pubsub\"},\"ackDeadlineSeconds\":30}"
command_json="{\"op\":\"put\",\"key\":\"$KEY\",\"body\":\"$BODY\"}"
data="$(printf '%s' "$command_json" | base64 -w0)"
say "publishing to $TOPIC: $command_json"
curl -fsS -X POST "$ps/topics/$TOPIC:publish" -H 'Content-Type: application/json' \
    -d "{\"messages\":[{\"data\":\"$data\"}]}" >&2
echo >&2

# --- S3: wait for the object -------------------------------------------------------
say "waiting for s3://$RIG_BUCKET/$PREFIX$KEY"
content="$("$PY" - "$RIG_BUCKET" "$PREFIX$KEY" "$WAIT_SECS" <<'PY'
import os, sys, time
import boto3
from botocore.exceptions import ClientError

bucket, key, wait = sys.argv[1], sys.argv[2], float(sys.argv[3])
s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["RIG_MOTO_ENDPOINT"],
    region_name=os.environ.get("RIG_AWS_REGION", "us-east-1"),
    aws_access_key_id=os.environ["RIG_ADMIN_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["RIG_ADMIN_SECRET_ACCESS_KEY"],
)
deadline = time.monotonic() + wait
while True:
    try:
        print(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
        break
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("NoSuchKey", "404"):
            raise
    if time.monotonic() > deadline:
        sys.exit(f"s3://{bucket}/{key} did not appear in {wait:.0f}s")
    time.sleep(0.25)
PY
)"
echo "s3://$RIG_BUCKET/$PREFIX$KEY: $content"
[ "$content" = "$BODY" ] || { say "unexpected content"; exit 1; }
say "the service's log:"
grep -v '^\s*$' "$LOGS/service.log" | tail -n 8 | sed 's/^/    /' >&2
echo "OK: a Pub/Sub message became an S3 object through gcp-aws-bridge"
