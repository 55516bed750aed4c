#!/usr/bin/env bash
# Measures gcp-aws-bridge's credential paths on this machine, against moto
# (scripts/rig-up.sh moto), the metadata emulator and the fault proxy (which
# counts STS calls; GET /__counts):
#
#   1. credential-server: start to the first /healthz and to the first
#      200 of GET /v1/credentials (metadata token + one STS call);
#   2. warm GET /v1/credentials: latency and throughput (hey, CONC
#      connections, REQUESTS requests, 127.0.0.1), and STS calls meanwhile;
#   3. idle RSS of the server after that load (VmRSS, and VmHWM);
#   4. credential_process: RUNS sequential `aws sts get-caller-identity`
#      (AWS CLI, PyPI, from rig/venv.sh) with `credential_process =
#      gcp-aws-bridge credentials`, with the shared cache and with
#      --no-cache: STS calls and wall time; and the same RUNS with the AWS
#      CLI given the credential server (AWS_CONTAINER_CREDENTIALS_FULL_URI).
#
#   bench/credentials.sh            (PROFILE=release by default; PROFILE=dev
#                                    measures the debug build)
#   RUNS=20 REQUESTS=20000 CONC=16
#
# Prints one line per figure and writes them to $RIG_DIR/credentials-bench.env.
# Installs hey (apt-get) when missing. Load goes to 127.0.0.1 only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export RIG_DIR="${RIG_DIR:-$ROOT/.run/bench-credentials}"
PROFILE="${PROFILE:-release}"
RUNS="${RUNS:-20}"
REQUESTS="${REQUESTS:-20000}"
CONC="${CONC:-16}"
WORK="$RIG_DIR/credentials-bench"
LOGS="$WORK/logs"
FIG="$RIG_DIR/credentials-bench.env"

say() { echo "bench/credentials: $*" >&2; }

pids=()
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    "$ROOT/scripts/rig-down.sh" >/dev/null 2>&1 || true
    [ $rc -ne 0 ] && say "FAILED (exit $rc); logs in $LOGS"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v hey >/dev/null && command -v apt-get >/dev/null; then
    SUDO=()
    [ "$(id -u)" -eq 0 ] || SUDO=(sudo -n)
    say "installing hey (apt-get)"
    "${SUDO[@]}" apt-get update -qq >&2 && "${SUDO[@]}" apt-get install -y -qq hey >&2 || true
fi
for tool in hey curl python3; do
    command -v "$tool" >/dev/null || { say "$tool is needed (apt-get install hey curl)"; exit 1; }
done

rm -rf "$WORK"
mkdir -p "$LOGS"
: >"$FIG"
fig() { printf '%s=%q\n' "$1" "$2" >>"$FIG"; printf '%-28s %s\n' "$1" "$2"; }

if [ "$PROFILE" = release ]; then
    cargo build --release --bin gcp-aws-bridge -p gcp-aws-bridge >&2
    cargo build --release -p bridge-testkit --bins >&2
    TARGET="$ROOT/target/release"
else
    cargo build --bin gcp-aws-bridge -p gcp-aws-bridge >&2
    cargo build -p bridge-testkit --bins >&2
    TARGET="$ROOT/target/debug"
fi
BIN="$TARGET/gcp-aws-bridge"
PY="$("$ROOT/rig/venv.sh")"
"$PY" -c 'import awscli' || { say "$PY has no awscli (rig/requirements.txt)"; exit 1; }

fig DATE "$(date -u '+%Y-%m-%d %H:%M UTC')"
fig PROFILE "$PROFILE"
fig NPROC "$(nproc)"
fig LOAD_BEFORE "$(cut -d' ' -f1-3 /proc/loadavg)"
fig COMMIT "$(git rev-parse --short HEAD)"

"$ROOT/scripts/rig-down.sh" >/dev/null 2>&1 || true
"$ROOT/scripts/rig-up.sh" moto </dev/null >&2
# shellcheck source=/dev/null
source "$RIG_DIR/rig.env"

wait_ready() { # file -> the address after READY
    local file="$1" i
    for ((i = 0; i < 400; i++)); do
        grep -q '^READY ' "$file" 2>/dev/null && { sed -n 's/^READY //p' "$file" | head -1; return 0; }
        sleep 0.05
    done
    say "no READY in $file"; cat "$file" >&2; return 1
}
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
sts_calls() { curl -fsS "$PROXY/__counts" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["counts"].get("AssumeRoleWithWebIdentity", 0))'; }

"$TARGET/metadata-emulator" >"$LOGS/metadata.out" 2>"$LOGS/metadata.err" &
pids+=($!)
META="$(wait_ready "$LOGS/metadata.out")"
# The STS gate is left off: this measures the paths, not the trust policy.
"$TARGET/fault-proxy" --upstream "$RIG_MOTO_ENDPOINT" >"$LOGS/proxy.out" 2>"$LOGS/proxy.err" &
pids+=($!)
PROXY="http://$(wait_ready "$LOGS/proxy.out")"

TOKEN="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PORT="$(free_port)"
URL="http://127.0.0.1:$PORT"
COMMON=(
    TARGET_AUDIENCE=sts.amazonaws.com
    AWS_ROLE_ARN="$RIG_ROLE_ARN"
    AWS_ROLE_SESSION_NAME=bench
    AWS_REGION=us-east-1
    AWS_ENDPOINT_URL="$PROXY"
    GCE_METADATA_HOST="$META"
    ID_TOKEN_SOURCE=metadata
    RUST_LOG=warn
)

# --- 1. start to first answer ----------------------------------------------------
t0="$(now_ms)"
env -i PATH="$PATH" "${COMMON[@]}" CREDENTIALS_ADDR="127.0.0.1:$PORT" \
    AWS_CONTAINER_AUTHORIZATION_TOKEN="$TOKEN" "$BIN" credential-server \
    >"$LOGS/server.out" 2>"$LOGS/server.err" &
SERVER=$!
pids+=("$SERVER")
until curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null; do
    kill -0 "$SERVER" 2>/dev/null || { say "the server exited"; cat "$LOGS/server.err" >&2; exit 1; }
    sleep 0.002
done
t1="$(now_ms)"
curl -fsS -o "$WORK/first.json" -H "Authorization: $TOKEN" "$URL/v1/credentials"
t2="$(now_ms)"
fig START_TO_HEALTHZ_MS "$((t1 - t0))"
fig START_TO_FIRST_CREDENTIALS_MS "$((t2 - t0))"
fig FIRST_CREDENTIALS_MS "$((t2 - t1)) (metadata token + STS AssumeRoleWithWebIdentity via moto)"

# --- 2. warm GET /v1/credentials ----------------------------------------------------
before="$(sts_calls)"
hey -n 1000 -c "$CONC" -H "Authorization: $TOKEN" "$URL/v1/credentials" >/dev/null
hey -n "$REQUESTS" -c "$CONC" -H "Authorization: $TOKEN" "$URL/v1/credentials" >"$WORK/hey.txt"
after="$(sts_calls)"
rps="$(awk '/Requests\/sec/ {print $2}' "$WORK/hey.txt")"
p50="$(awk '/ 50% in/ {print $3 * 1000}' "$WORK/hey.txt")"
p99="$(awk '/ 99% in/ {print $3 * 1000}' "$WORK/hey.txt")"
codes="$(awk '/Status code distribution/ {f=1; next} f && /\[/ {printf "%s%s", sep, $0; sep=","} f && !/\[/ && NF==0 {f=0}' "$WORK/hey.txt" | tr -s ' ')"
fig WARM_RPS "$rps (hey -n $REQUESTS -c $CONC)"
fig WARM_P50_MS "$p50"
fig WARM_P99_MS "$p99"
fig WARM_STATUS "$codes"
fig WARM_STS_CALLS "$((after - before)) for $((REQUESTS + 1000)) requests"

# --- 3. idle RSS --------------------------------------------------------------------
sleep 2
fig IDLE_RSS_KIB "$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER/status") (after the load; peak VmHWM $(awk '/^VmHWM/ {print $2}' "/proc/$SERVER/status") KiB)"

# --- 4. 20 aws commands: credential_process with and without the cache, and the server
CACHE="$WORK/xdg-cache"
mkdir -p "$CACHE"
aws_runs() { # label config-file [extra env...]
    local label="$1" config="$2" t s0 s1 i
    shift 2
    s0="$(sts_calls)"
    t="$(now_ms)"
    for ((i = 0; i < RUNS; i++)); do
        env -i PATH="$PATH" HOME="$WORK" "${COMMON[@]}" AWS_DEFAULT_REGION=us-east-1 \
            XDG_CACHE_HOME="$CACHE" AWS_CONFIG_FILE="$config" \
            AWS_SHARED_CREDENTIALS_FILE="$WORK/none" AWS_EC2_METADATA_DISABLED=true "$@" \
            "$PY" -m awscli sts get-caller-identity >/dev/null 2>>"$LOGS/aws-$label.err"
    done
    t="$(( $(now_ms) - t ))"
    s1="$(sts_calls)"
    fig "AWS_${label}" "$RUNS runs: $((s1 - s0)) STS calls, ${t} ms ($((t / RUNS)) ms a run)"
}
printf '[default]\nregion = us-east-1\ncredential_process = %s credentials\n' "$BIN" >"$WORK/cached.ini"
printf '[default]\nregion = us-east-1\ncredential_process = %s credentials --no-cache\n' "$BIN" >"$WORK/nocache.ini"
printf '[default]\nregion = us-east-1\n' >"$WORK/plain.ini"
aws_runs PROCESS_NO_CACHE "$WORK/nocache.ini"
aws_runs PROCESS_CACHE "$WORK/cached.ini"
aws_runs CONTAINER_SERVER "$WORK/plain.ini" \
    AWS_CONTAINER_CREDENTIALS_FULL_URI="$URL/v1/credentials" AWS_CONTAINER_AUTHORIZATION_TOKEN="$TOKEN"
# The AWS CLI alone, static credentials (what the CLI itself costs a run).
key="$(env -i PATH="$PATH" "${COMMON[@]}" XDG_CACHE_HOME="$CACHE" "$BIN" credentials)"
aws_runs STATIC_KEYS "$WORK/plain.ini" \
    AWS_ACCESS_KEY_ID="$(echo "$key" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["AccessKeyId"])')" \
    AWS_SECRET_ACCESS_KEY="$(echo "$key" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["SecretAccessKey"])')" \
    AWS_SESSION_TOKEN="$(echo "$key" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["SessionToken"])')"
fig LOAD_AFTER "$(cut -d' ' -f1-3 /proc/loadavg)"
say "figures in $FIG"
