#!/usr/bin/env bash
# What metrics cost: CPU time per 1 KiB PUT and RSS of the service with the
# OTLP exporter on (exporting every second to a local receiver) against off,
# the same PUT load (wrk + bench/put.lua, 16 connections) in alternating runs.
#
#   bench/metrics-cost.sh                  debug build (target/debug), 2 rounds of 20 s
#   PROFILE=release bench/metrics-cost.sh  the release build
#   ROUNDS=3 SECS=30 bench/metrics-cost.sh
#
# Starts (on 127.0.0.1, stopped on exit): moto (STS; RIG_DIR=.run/metrics-cost),
# the metadata emulator, the fault proxy as the STS endpoint, s3-sink as S3
# (answering at once, so the service's CPU is what is measured), and a Python
# OTLP endpoint that answers 200 to every POST. Prints one line per run and a
# summary: CPU µs per request off and on, the difference in %, VmRSS and VmHWM.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export RIG_DIR="${RIG_DIR:-$ROOT/.run/metrics-cost}"
PROFILE="${PROFILE:-debug}"
ROUNDS="${ROUNDS:-2}"
SECS="${SECS:-20}"
CONC="${CONC:-16}"
INTERVAL_MS="${INTERVAL_MS:-1000}"
WORK="$RIG_DIR/metrics-cost"
mkdir -p "$WORK"

if [ "$PROFILE" = release ]; then
    cargo build --release --bin gcp-aws-bridge -p gcp-aws-bridge >&2
    cargo build --release -p bridge-testkit --bins >&2
else
    cargo build --bin gcp-aws-bridge -p gcp-aws-bridge >&2
    cargo build -p bridge-testkit --bins >&2
fi
BIN="$ROOT/target/$PROFILE/gcp-aws-bridge"
TK="$ROOT/target/$PROFILE"

say() { echo "metrics-cost: $*" >&2; }
pids=()
svc_pid=""
cleanup() {
    [ -n "$svc_pid" ] && { kill -TERM "$svc_pid" 2>/dev/null || true; wait "$svc_pid" 2>/dev/null || true; }
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    "$ROOT/scripts/rig-down.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$ROOT/scripts/rig-up.sh" moto </dev/null >&2
# shellcheck source=/dev/null
source "$RIG_DIR/rig.env"

wait_ready() {
    local file="$1" i
    for ((i = 0; i < 200; i++)); do
        grep -q '^READY ' "$file" 2>/dev/null && { sed -n 's/^READY //p' "$file" | head -1; return 0; }
        sleep 0.05
    done
    say "no READY in $file"; return 1
}
"$TK/metadata-emulator" >"$WORK/metadata.out" 2>&1 &
pids+=($!)
META="$(wait_ready "$WORK/metadata.out")"
"$TK/fault-proxy" --upstream "$RIG_MOTO_ENDPOINT" >"$WORK/sts.out" 2>&1 &
pids+=($!)
STS="http://$(wait_ready "$WORK/sts.out")"
"$TK/s3-sink" >"$WORK/sink.out" 2>&1 &
pids+=($!)
SINK="http://$(wait_ready "$WORK/sink.out")"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# An OTLP endpoint that takes every export (what it receives is not checked here).
OTLP_PORT="$(free_port)"
python3 - "$OTLP_PORT" >"$WORK/otlp.out" 2>&1 <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        print("export", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
pids+=($!)

BODY="$WORK/1k.bin"
head -c 1024 /dev/urandom >"$BODY"
export BENCH_BODY="$BODY"
CLK_TCK="$(getconf CLK_TCK)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status_kb() { awk -v k="$2" '$1 == k":" {print $2; exit}' "/proc/$1/status"; }

start_service() { # on|off
    local port i extra=()
    port="$(free_port)"
    if [ "$1" = on ]; then
        extra=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_PORT" OTEL_METRIC_EXPORT_INTERVAL="$INTERVAL_MS")
    fi
    env -i PATH="$PATH" RUST_LOG=warn LOG_FORMAT=json PORT="$port" \
        TARGET_AUDIENCE=sts.amazonaws.com AWS_ROLE_ARN="$RIG_ROLE_ARN" AWS_ROLE_SESSION_NAME=bench \
        AWS_REGION="${RIG_AWS_REGION:-us-east-1}" AWS_ENDPOINT_URL_STS="$STS" AWS_ENDPOINT_URL_S3="$SINK" \
        S3_FORCE_PATH_STYLE=true S3_BUCKET="$RIG_BUCKET" S3_PREFIX="${RIG_ALLOWED_PREFIX:-allowed/}bench/" \
        GCE_METADATA_HOST="$META" ID_TOKEN_SOURCE=metadata AUTH_MODE=none "${extra[@]}" \
        "$BIN" </dev/null >"$WORK/service-$1.log" 2>&1 &
    svc_pid=$!
    SVC="http://127.0.0.1:$port"
    for ((i = 0; i < 400; i++)); do
        curl -sf -o /dev/null "$SVC/readyz" 2>/dev/null && return 0
        sleep 0.02
    done
    say "the service did not get ready"; cat "$WORK/service-$1.log" >&2; return 1
}

declare -A CPU_US REQS RSS HWM
for ((r = 1; r <= ROUNDS; r++)); do
    for mode in off on; do
        start_service "$mode"
        wrk -t1 -c"$CONC" -s bench/put.lua -d3s "$SVC/v1/objects/bench" >/dev/null
        t0="$(cpu_ticks "$svc_pid")"
        out="$(wrk -t1 -c"$CONC" -s bench/put.lua -d"${SECS}s" "$SVC/v1/objects/bench" | sed -n 's/^RESULT //p')"
        t1="$(cpu_ticks "$svc_pid")"
        n="$(sed -n 's/.*status_201=\([0-9]*\).*/\1/p' <<<"$out")"
        us=$(((t1 - t0) * 1000000 / CLK_TCK))
        rss="$(status_kb "$svc_pid" VmRSS)"
        hwm="$(status_kb "$svc_pid" VmHWM)"
        kill -TERM "$svc_pid"; wait "$svc_pid" 2>/dev/null || true; svc_pid=""
        CPU_US[$mode]=$((${CPU_US[$mode]:-0} + us))
        REQS[$mode]=$((${REQS[$mode]:-0} + n))
        RSS[$mode]="${RSS[$mode]:-} $rss"
        HWM[$mode]="${HWM[$mode]:-} $hwm"
        echo "round $r metrics $mode: 201s=$n cpu_us=$us cpu_us_per_req=$(python3 -c "print(round($us / max($n, 1), 1))") rss_kb=$rss hwm_kb=$hwm"
    done
done
exports="$(grep -c export "$WORK/otlp.out" || true)"
python3 - "${CPU_US[off]}" "${REQS[off]}" "${CPU_US[on]}" "${REQS[on]}" "${RSS[off]}" "${RSS[on]}" "${HWM[off]}" "${HWM[on]}" "$exports" <<'PY'
import sys
cpu_off, n_off, cpu_on, n_on = map(int, sys.argv[1:5])
rss_off, rss_on, hwm_off, hwm_on = ([int(x) for x in a.split()] for a in sys.argv[5:9])
off, on = cpu_off / n_off, cpu_on / n_on
avg = lambda xs: sum(xs) / len(xs)
print(f"summary: cpu_us_per_req off={off:.1f} on={on:.1f} ({(on - off) / off * 100:+.1f} %); "
      f"rss_kb off={avg(rss_off):.0f} on={avg(rss_on):.0f} ({(avg(rss_on) - avg(rss_off)) / 1024:+.2f} MiB); "
      f"hwm_kb off={avg(hwm_off):.0f} on={avg(hwm_on):.0f} ({(avg(hwm_on) - avg(hwm_off)) / 1024:+.2f} MiB); "
      f"exports received={sys.argv[9]}")
PY
