#!/usr/bin/env bash
# CPU cost of one 1 KiB `PUT /v1/objects/{key}` (release build), beside a bare
# hyper forwarder (the test kit's fault-proxy, injecting nothing) in front of
# the same S3 stand-in (s3-sink, answering at once).
#
#   bench/profile-put.sh                    instructions per PUT (callgrind) and
#                                           CPU µs per PUT, req/s (native)
#   MODE=callgrind bench/profile-put.sh     instructions only
#   MODE=native bench/profile-put.sh        CPU time and req/s only
#
# Instructions per request are counted by valgrind's callgrind over N requests
# after a warm-up (counters zeroed with callgrind_control): repeatable on a
# machine shared with other work, where wall-clock figures are not. The
# annotated profiles stay in $RIG_DIR/profile/ (callgrind_annotate FILE).
#
# Knobs: SERVICE_BIN (target/release/gcp-aws-bridge), N (2000 under
# callgrind), NATIVE_N (20000), ROUNDS (1: native runs of service and
# forwarder in turns, with the median ratio), CONC (16), SECS (10, the wrk runs), RIG_DIR
# (.run/profile). Needs moto (scripts/rig-up.sh moto) for STS, valgrind, hey
# and wrk.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export RIG_DIR="${RIG_DIR:-$ROOT/.run/profile}"
MODE="${MODE:-all}"
N="${N:-2000}"
NATIVE_N="${NATIVE_N:-20000}"
ROUNDS="${ROUNDS:-1}"
CONC="${CONC:-16}"
SECS="${SECS:-10}"
BIN="${SERVICE_BIN:-$ROOT/target/release/gcp-aws-bridge}"
TK="$ROOT/target/release"
OUT="$RIG_DIR/profile"
mkdir -p "$OUT"

say() { echo "profile: $*" >&2; }
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "${OWN_RIG:-}" ]; then "$ROOT/scripts/rig-down.sh" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

if [ ! -f "$RIG_DIR/rig.env" ] || ! (source "$RIG_DIR/rig.env" && curl -sf -o /dev/null "$RIG_MOTO_ENDPOINT/moto-api/"); then
    "$ROOT/scripts/rig-up.sh" moto </dev/null >&2
    OWN_RIG=1
fi
# shellcheck source=/dev/null
source "$RIG_DIR/rig.env"

wait_ready() { # file -> the address after READY
    local i
    for ((i = 0; i < 400; i++)); do
        grep -q '^READY ' "$1" 2>/dev/null && { sed -n 's/^READY //p' "$1" | head -1; return 0; }
        sleep 0.05
    done
    say "no READY in $1"; cat "$1" >&2; return 1
}
wait_http() { # url
    local i
    for ((i = 0; i < 1200; i++)); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.05
    done
    say "$1 never answered"; return 1
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Context switches of all of a process's threads.
ctx_switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {n += $2} END {print n}'; }
CLK_TCK="$(getconf CLK_TCK)"

"$TK/metadata-emulator" >"$OUT/metadata.out" 2>/dev/null &
pids+=($!)
META="$(wait_ready "$OUT/metadata.out")"
"$TK/s3-sink" >"$OUT/s3-sink.out" 2>/dev/null &
pids+=($!)
SINK="http://$(wait_ready "$OUT/s3-sink.out")"

BODY="$OUT/1k.bin"
head -c 1024 /dev/urandom >"$BODY"
export BENCH_BODY="$BODY"
PREFIX="${RIG_ALLOWED_PREFIX:-allowed/}bench/"
SINK_PATH="/$RIG_BUCKET/${PREFIX}direct"

svc_env=(PATH="$PATH" RUST_LOG=warn LOG_FORMAT=json
    TARGET_AUDIENCE=sts.amazonaws.com
    AWS_ROLE_ARN="$RIG_ROLE_ARN" AWS_ROLE_SESSION_NAME=bench
    AWS_REGION="${RIG_AWS_REGION:-us-east-1}"
    AWS_ENDPOINT_URL_STS="$RIG_MOTO_ENDPOINT" AWS_ENDPOINT_URL_S3="$SINK" S3_FORCE_PATH_STYLE=true
    S3_BUCKET="$RIG_BUCKET" S3_PREFIX="$PREFIX"
    GCE_METADATA_HOST="$META" ID_TOKEN_SOURCE=metadata AUTH_MODE=none)

# $1: label; $2: URL; rest: the command to run under callgrind, or natively.
# Sets RUN_PID and waits for URL's host to answer.
start_service() {
    local port="$1" log="$2"
    shift 2
    env -i "${svc_env[@]}" PORT="$port" "$@" </dev/null >"$log" 2>&1 &
    RUN_PID=$!
    pids+=("$RUN_PID")
}
start_forwarder() {
    local log="$1"
    shift
    "$@" "$TK/fault-proxy" --upstream "$SINK" >"$log" 2>&1 &
    RUN_PID=$!
    pids+=("$RUN_PID")
}
stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
hey_n() { # n url
    hey -n "$1" -c "$CONC" -m PUT -D "$BODY" -T application/octet-stream "$2" >"$OUT/hey.txt"
    grep -q "\[201\]\|\[200\]" "$OUT/hey.txt" || { say "no 2xx answers:"; cat "$OUT/hey.txt" >&2; exit 1; }
    if grep -q "Error distribution" "$OUT/hey.txt" || grep -E '^\s+\[[345][0-9][0-9]\]' "$OUT/hey.txt" >&2; then
        say "errors:"; cat "$OUT/hey.txt" >&2; exit 1
    fi
}
total_ir() { # callgrind output file -> total instructions
    callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}'
}

CG=(valgrind --tool=callgrind --collect-atstart=yes --dump-instr=no)
if [ "$MODE" = all ] || [ "$MODE" = callgrind ]; then
    # Service.
    port="$(free_port)"
    start_service "$port" "$OUT/service-cg.log" "${CG[@]}" --callgrind-out-file="$OUT/service.cg.%p" "$BIN"
    svc="$RUN_PID"
    URL="http://127.0.0.1:$port"
    wait_http "$URL/healthz"
    wait_http "$URL/readyz"
    hey_n 300 "$URL/v1/objects/bench"
    callgrind_control -z "$svc" >/dev/null
    hey_n "$N" "$URL/v1/objects/bench"
    callgrind_control -d "$svc" >/dev/null
    sleep 1
    stop "$svc"
    dump="$(ls -t "$OUT"/service.cg.*.[0-9]* 2>/dev/null | head -1)"
    [ -n "$dump" ] || dump="$(ls -t "$OUT"/service.cg.* | head -1)"
    svc_ir="$(total_ir "$dump")"
    # Forwarder.
    start_forwarder "$OUT/forwarder-cg.out" "${CG[@]}" --callgrind-out-file="$OUT/forwarder.cg.%p"
    fwd="$RUN_PID"
    FWD="http://$(wait_ready "$OUT/forwarder-cg.out")"
    hey_n 300 "$FWD$SINK_PATH"
    callgrind_control -z "$fwd" >/dev/null
    hey_n "$N" "$FWD$SINK_PATH"
    callgrind_control -d "$fwd" >/dev/null
    sleep 1
    stop "$fwd"
    fdump="$(ls -t "$OUT"/forwarder.cg.*.[0-9]* 2>/dev/null | head -1)"
    [ -n "$fdump" ] || fdump="$(ls -t "$OUT"/forwarder.cg.* | head -1)"
    fwd_ir="$(total_ir "$fdump")"
    echo "instructions per PUT: service $((svc_ir / N)), forwarder $((fwd_ir / N)), ratio $(python3 -c "print(f'{$svc_ir / $fwd_ir:.2f}')")  (N=$N; profiles: $dump $fdump)"
fi

if [ "$MODE" = all ] || [ "$MODE" = native ]; then
    port="$(free_port)"
    start_service "$port" "$OUT/service.log" "$BIN"
    svc="$RUN_PID"
    URL="http://127.0.0.1:$port"
    wait_http "$URL/readyz"
    start_forwarder "$OUT/forwarder.out"
    fwd="$RUN_PID"
    FWD="http://$(wait_ready "$OUT/forwarder.out")"
    hey_n 2000 "$URL/v1/objects/bench"
    hey_n 2000 "$FWD$SINK_PATH"
    # Service and forwarder in turns, ROUNDS times: each round's ratio is
    # taken under the same machine state; the median of the rounds is the
    # figure.
    ratios=()
    for ((round = 1; round <= ROUNDS; round++)); do
        t0="$(cpu_ticks "$svc")"
        c0="$(ctx_switches "$svc")"
        hey_n "$NATIVE_N" "$URL/v1/objects/bench"
        svc_us=$((($(cpu_ticks "$svc") - t0) * 1000000 / CLK_TCK / NATIVE_N))
        svc_cs="$(python3 -c "print(f'{($(ctx_switches "$svc") - $c0) / $NATIVE_N:.2f}')")"
        t0="$(cpu_ticks "$fwd")"
        c0="$(ctx_switches "$fwd")"
        hey_n "$NATIVE_N" "$FWD$SINK_PATH"
        fwd_us=$((($(cpu_ticks "$fwd") - t0) * 1000000 / CLK_TCK / NATIVE_N))
        fwd_cs="$(python3 -c "print(f'{($(ctx_switches "$fwd") - $c0) / $NATIVE_N:.2f}')")"
        ratio="$(python3 -c "print(f'{$svc_us / $fwd_us:.2f}')")"
        ratios+=("$ratio")
        echo "CPU µs per PUT: service $svc_us, forwarder $fwd_us, ratio $ratio; context switches per PUT: service $svc_cs, forwarder $fwd_cs (round $round of $ROUNDS, NATIVE_N=$NATIVE_N, user + system from /proc/PID/stat)"
    done
    echo "median ratio of $ROUNDS rounds: $(printf '%s\n' "${ratios[@]}" | sort -n | python3 -c 'import sys, statistics; print(f"{statistics.median(float(l) for l in sys.stdin):.2f}")')"
    wrk -t1 -c"$CONC" -d"${SECS}s" -s bench/put.lua "$URL/v1/objects/bench" | sed -n 's/^RESULT /service: /p'
    wrk -t1 -c"$CONC" -d"${SECS}s" -s bench/put.lua "$FWD$SINK_PATH" | sed -n 's/^RESULT /forwarder: /p'
    stop "$svc"
    stop "$fwd"
fi
