#!/usr/bin/env bash
# Runs gcp-aws-bridge end to end on this machine, in the shape it is deployed
# in, against local stand-ins:
#
#   moto (STS, IAM, S3) and the Pub/Sub emulator   scripts/rig-up.sh, RIG_DIR=.run/local
#   a GCE metadata server (and Google's JWKS)      the test kit's metadata-emulator
#   Cloud Run in front of the service              the test kit's cloud-run-emulator:
#                                                  IAM check, stripped signature,
#                                                  h2c to the container
#   gcp-aws-bridge                                 target/debug/gcp-aws-bridge, started
#                                                  by the front end, AUTH_MODE=cloud-run-iam
#   Pub/Sub's authenticated push                   the test kit's push-shim: the push
#                                                  subscription's OIDC token
#
# then publishes a command to a Pub/Sub topic whose push subscription points at
# the service (through the push shim and the front end), and waits for the
# object it names to appear in S3:
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
shim_pid=""
cleanup() {
    local rc=$?
    for pid in $shim_pid $svc_pid $emu_pid; do
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

# --- Cloud Run and the service ----------------------------------------------------
# The front end starts the service with PORT and K_SERVICE/K_REVISION, lets
# through only tokens of the invokers (the push account), strips their
# signature, and speaks h2c to the container as the Terraform configures it.
SERVICE_URL=https://gcp-aws-bridge-123456789012.europe-west1.run.app
PUSH_SA=gcp-aws-bridge-push@bridge-test.iam.gserviceaccount.com
jwks="http://$metadata_host/oauth2/v3/certs"
wait_ready() { # wait_ready LOG PID NAME: prints the address of "READY host:port"
    local addr=""
    for _ in $(seq 600); do
        addr="$(sed -n 's/^READY //p' "$1" | head -n 1)"
        [ -n "$addr" ] && { echo "$addr"; return 0; }
        kill -0 "$2" 2>/dev/null || { say "$3 exited"; cat "$1" >&2; return 1; }
        sleep 0.1
    done
    say "$3 did not start"
    return 1
}
env -i PATH="$PATH" HOME="${HOME:-/tmp}" RUST_LOG=info \
    TARGET_AUDIENCE=sts.amazonaws.com \
    AWS_ROLE_ARN="$RIG_ROLE_ARN" \
    AWS_REGION=us-east-1 \
    AWS_ENDPOINT_URL="$RIG_MOTO_ENDPOINT" \
    S3_FORCE_PATH_STYLE=true \
    S3_BUCKET="$RIG_BUCKET" \
    S3_PREFIX="$PREFIX" \
    GCE_METADATA_HOST="$metadata_host" \
    GOOGLE_CERTS_URL="$jwks" \
    AUTH_MODE=cloud-run-iam \
    AUTH_AUDIENCES="$SERVICE_URL" \
    AUTH_ALLOWED_EMAILS="$PUSH_SA" \
    GOOGLE_CLOUD_PROJECT=bridge-test \
    LOG_FORMAT=text \
    "$TARGET/debug/cloud-run-emulator" --port 0 --url "$SERVICE_URL" --jwks-url "$jwks" \
    --invoker "serviceAccount:$PUSH_SA" --use-http2 true --startup-probe /healthz \
    -- "$TARGET/debug/gcp-aws-bridge" </dev/null >"$LOGS/service.log" 2>&1 &
svc_pid=$!
front="$(wait_ready "$LOGS/service.log" "$svc_pid" cloud-run-emulator)" || exit 1
service="http://$front"
say "Cloud Run front end on $service (service URL $SERVICE_URL), gcp-aws-bridge behind it"
say "  (bucket $RIG_BUCKET, prefix $PREFIX, AUTH_MODE=cloud-run-iam, invoker $PUSH_SA)"

# --- Pub/Sub's authenticated push ----------------------------------------------------
"$TARGET/debug/push-shim" --port 0 --target "$service" --service-account "$PUSH_SA" \
    --audience "$SERVICE_URL" --metadata "http://$metadata_host" </dev/null >"$LOGS/push-shim.log" 2>&1 &
shim_pid=$!
shim="http://$(wait_ready "$LOGS/push-shim.log" "$shim_pid" push-shim)" || exit 1
say "push shim on $shim (OIDC token of $PUSH_SA, aud $SERVICE_URL)"

# --- Pub/Sub: topic, push subscription, message ----------------------------------
ps="http://$PUBSUB_EMULATOR_HOST/v1/projects/$RIG_PUBSUB_PROJECT"
curl -fsS -o /dev/null -X PUT "$ps/topics/$TOPIC"
curl -fsS -o /dev/null -X PUT "$ps/subscriptions/$SUBSCRIPTION" -H 'Content-Type: application/json' \
    -d "{\"topic\":\"projects/$RIG_PUBSUB_PROJECT/topics/$TOPIC\",\"pushConfig\":{\"pushEndpoint\":\"$shim/pubsub\"},\"ackDeadlineSeconds\":30}"
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
refused="$(curl -s -o /dev/null -w '%{http_code}' "$service/v1/objects/$KEY")"
say "a call without a token is refused by the front end: HTTP $refused"
[ "$refused" = 403 ] || { say "expected 403 from the front end"; exit 1; }
say "the service's log:"
grep -v '^\s*$' "$LOGS/service.log" | tail -n 8 | sed 's/^/    /' >&2
echo "OK: a Pub/Sub message became an S3 object through Cloud Run and gcp-aws-bridge"
