#!/usr/bin/env bash
# Benchmarks of gcp-aws-bridge (release build) on this machine, each beside a
# baseline measured in the same run. Prints a table and writes bench/RESULTS.md.
#
#   bench/run.sh                     everything (about 8 minutes with a 1 GiB object)
#   SIZE_MIB=256 bench/run.sh        a smaller replication object
#   LOAD_SECS=20 PUT_SECS=5 SEQ_SECS=3 bench/run.sh   shorter runs
#   RESULTS=/tmp/r.md bench/run.sh   write the results elsewhere
#
# What it starts (all on 127.0.0.1, all stopped on exit):
#   moto (STS, IAM, S3; IAM auth on) and fake-gcs-server   scripts/rig-up.sh, RIG_DIR=.run/bench
#   metadata-emulator                                      the service's Google ID tokens
#   fault-proxy in front of moto                           STS endpoint; counts AssumeRoleWithWebIdentity
#   s3-sink                                                S3 endpoint of the PUT and load runs
#   s3-sink --latency-ms S3_LATENCY_MS                     S3 endpoint that answers after 10 ms
#   fault-proxy in front of s3-sink                        a bare forwarder, for reference
#   gcp-aws-bridge                                         several instances, one at a time
#
# moto answers a few hundred requests per second, so the PUT and load runs send
# S3 traffic to s3-sink (testkit/src/bin/s3-sink.rs), which reads each body and
# answers 200 with no signature check and no storage. Cold/warm requests and
# replication use moto. The service logs JSON at RUST_LOG=warn to a file, so
# per-request logging does not weigh on the figures.
#
# Exits non-zero when the load run sees a status other than 201, a transport
# error, or open file descriptors growing; RESULTS.md is written either way.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export RIG_DIR="${RIG_DIR:-$ROOT/.run/bench}"
RESULTS="${RESULTS:-$ROOT/bench/RESULTS.md}"
SIZE_MIB="${SIZE_MIB:-1024}"
PUT_SECS="${PUT_SECS:-20}"
PUT_CONC="${PUT_CONC:-16}"
BUSY_CONC="${BUSY_CONC:-80}"
S3_LATENCY_MS="${S3_LATENCY_MS:-10}"
SEQ_SECS="${SEQ_SECS:-10}"
LOAD_SECS="${LOAD_SECS:-60}"
LOAD_CONC="${LOAD_CONC:-200}"
STARTS="${STARTS:-20}"
COLD_STARTS="${COLD_STARTS:-5}"
FD_MARGIN="${FD_MARGIN:-8}"

BIN="$ROOT/target/release/gcp-aws-bridge"
TK="$ROOT/target/release"
WORK="$RIG_DIR/bench"
LOGS="$WORK/logs"
FIG="$WORK/figures.env"

say() { echo "bench: $*" >&2; }

pids=()
svc_pid=""
cleanup() {
    local rc=$?
    [ -n "$svc_pid" ] && { kill -TERM "$svc_pid" 2>/dev/null || true; wait "$svc_pid" 2>/dev/null || true; }
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    "$ROOT/scripts/rig-down.sh" >/dev/null 2>&1 || true
    [ $rc -ne 0 ] && say "FAILED (exit $rc); logs in $LOGS"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# hey and wrk come from Debian/Ubuntu packages; installed when missing.
missing=()
for tool in hey wrk; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
    SUDO=()
    [ "$(id -u)" -eq 0 ] || SUDO=(sudo -n)
    say "installing ${missing[*]} (apt-get)"
    "${SUDO[@]}" apt-get update -qq >&2 && "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >&2 ||
        say "could not install ${missing[*]}"
fi
for tool in hey wrk curl python3; do
    command -v "$tool" >/dev/null || { say "$tool is needed (apt-get install hey wrk)"; exit 1; }
done

rm -rf "$WORK"
mkdir -p "$LOGS"
: >"$FIG"
fig() { printf '%s=%q\n' "$1" "$2" >>"$FIG"; }

# --- builds ----------------------------------------------------------------------
# scripts/measure-replication.sh runs the same release build, so the binary
# measured is the one built from the working tree now.
say "building (cargo build --release --bin gcp-aws-bridge; -p bridge-testkit --bins)"
cargo build --release --bin gcp-aws-bridge >&2
cargo build --release -p bridge-testkit --bins >&2

# --- the machine ---------------------------------------------------------------------
fig DATE "$(date -u '+%Y-%m-%d %H:%M UTC')"
fig NPROC "$(nproc)"
fig CPU "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
fig MEM "$(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')"
fig KERNEL "$(uname -sr)"
fig RUSTC "$(rustc -V)"
fig COMMIT "$(git rev-parse --short HEAD)"
fig DIRTY "$(git status --porcelain -- src Cargo.toml Cargo.lock | wc -l)"
fig LOAD_BEFORE "$(cut -d' ' -f1-3 /proc/loadavg)"
fig HEY "$(dpkg-query -W -f '${Version}' hey 2>/dev/null || echo '?')"
fig WRK "$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
fig BIN_BYTES "$(stat -c %s "$BIN")"

# --- stand-ins -------------------------------------------------------------------------
"$ROOT/scripts/rig-down.sh" >/dev/null 2>&1 || true
say "starting moto and fake-gcs-server (RIG_DIR=$RIG_DIR)"
"$ROOT/scripts/rig-up.sh" moto gcs </dev/null >&2
# shellcheck source=/dev/null
source "$RIG_DIR/rig.env"

wait_ready() { # file -> the address after READY
    local file="$1" i
    for ((i = 0; i < 200; i++)); do
        grep -q '^READY ' "$file" 2>/dev/null && { sed -n 's/^READY //p' "$file" | head -1; return 0; }
        sleep 0.05
    done
    say "no READY in $file"; cat "$file" >&2; return 1
}

"$TK/metadata-emulator" >"$LOGS/metadata.out" 2>"$LOGS/metadata.err" &
pids+=($!)
META="$(wait_ready "$LOGS/metadata.out")"
"$TK/fault-proxy" --upstream "$RIG_MOTO_ENDPOINT" >"$LOGS/sts-proxy.out" 2>"$LOGS/sts-proxy.err" &
pids+=($!)
STS="http://$(wait_ready "$LOGS/sts-proxy.out")"
"$TK/s3-sink" >"$LOGS/s3-sink.out" 2>"$LOGS/s3-sink.err" &
SINK_PID=$!
pids+=("$SINK_PID")
SINK="http://$(wait_ready "$LOGS/s3-sink.out")"
"$TK/s3-sink" --latency-ms "$S3_LATENCY_MS" >"$LOGS/s3-far.out" 2>"$LOGS/s3-far.err" &
FAR_PID=$!
pids+=("$FAR_PID")
FAR="http://$(wait_ready "$LOGS/s3-far.out")"
# A bare hyper forwarder (the fault proxy, injecting nothing) in front of
# s3-sink: what any second HTTP hop costs on this machine.
"$TK/fault-proxy" --upstream "$SINK" >"$LOGS/forwarder.out" 2>"$LOGS/forwarder.err" &
pids+=($!)
FWD="http://$(wait_ready "$LOGS/forwarder.out")"
say "metadata $META, STS proxy $STS -> $RIG_MOTO_ENDPOINT, s3-sink $SINK, s3-sink answering after ${S3_LATENCY_MS} ms $FAR, forwarder $FWD -> $SINK"

BODY="$WORK/1k.bin"
head -c 1024 /dev/urandom >"$BODY"
export BENCH_BODY="$BODY"
PREFIX="${RIG_ALLOWED_PREFIX:-allowed/}bench/"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
sts_calls() { curl -sf "$STS/__counts" | python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"].get("AssumeRoleWithWebIdentity", 0))'; }
status_field() { awk -v k="$2" '$1 == k":" {print $2; exit}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system, in CLK_TCK units
CLK_TCK="$(getconf CLK_TCK)"

# The service's environment; S3 goes to $1.
svc_env() {
    SVC_ENV=(PATH="$PATH" RUST_LOG=warn LOG_FORMAT=json
        TARGET_AUDIENCE=sts.amazonaws.com
        AWS_ROLE_ARN="$RIG_ROLE_ARN" AWS_ROLE_SESSION_NAME=bench
        AWS_REGION="${RIG_AWS_REGION:-us-east-1}"
        AWS_ENDPOINT_URL_STS="$STS" AWS_ENDPOINT_URL_S3="$1" S3_FORCE_PATH_STYLE=true
        S3_BUCKET="$RIG_BUCKET" S3_PREFIX="$PREFIX"
        GCE_METADATA_HOST="$META" ID_TOKEN_SOURCE=metadata AUTH_MODE=none)
}

start_service() { # s3-endpoint log -> sets svc_pid, SVC
    svc_env "$1"
    local port i
    port="$(free_port)"
    env -i "${SVC_ENV[@]}" PORT="$port" "$BIN" </dev/null >"$2" 2>&1 &
    svc_pid=$!
    SVC="http://127.0.0.1:$port"
    for ((i = 0; i < 400; i++)); do
        curl -sf -o /dev/null "$SVC/healthz" 2>/dev/null && return 0
        kill -0 "$svc_pid" 2>/dev/null || { say "the service exited"; cat "$2" >&2; return 1; }
        sleep 0.01
    done
    say "the service did not answer /healthz"; return 1
}

stop_service() {
    kill -TERM "$svc_pid" 2>/dev/null || true
    wait "$svc_pid" 2>/dev/null || true
    svc_pid=""
}

put_time() { # url -> "status seconds"
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X PUT --data-binary "@$BODY" \
        -H 'content-type: application/octet-stream' "$1"
}

# --- 1. start -> /healthz ----------------------------------------------------------------
say "start latency: $STARTS starts of the service, and of s3-sink as the baseline"
svc_env "$SINK"
env -i "${SVC_ENV[@]}" python3 bench/startup.py --runs "$STARTS" -- "$BIN" >"$WORK/start-service.json"
python3 bench/startup.py --runs "$STARTS" -- "$TK/s3-sink" --port '{port}' >"$WORK/start-sink.json"
jq_py() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
fig START_MS "$(jq_py "$WORK/start-service.json" median_ms)"
fig START_MIN_MS "$(jq_py "$WORK/start-service.json" min_ms)"
fig START_MAX_MS "$(jq_py "$WORK/start-service.json" max_ms)"
fig START_SINK_MS "$(jq_py "$WORK/start-sink.json" median_ms)"

# --- 2. cold and warm credentials (S3 = moto, IAM auth on) ------------------------------------
say "cold/warm: $COLD_STARTS fresh starts, each: first PUT (cold credentials), then 3 more"
: >"$WORK/coldwarm.txt"
for ((r = 0; r < COLD_STARTS; r++)); do
    before="$(sts_calls)"
    start_service "$RIG_MOTO_ENDPOINT" "$LOGS/service-cold-$r.log"
    read -r st cold < <(put_time "$SVC/v1/objects/cold-$r")
    [ "$st" = 201 ] || { say "cold PUT answered $st"; cat "$LOGS/service-cold-$r.log" >&2; exit 1; }
    warm=()
    for ((w = 0; w < 3; w++)); do
        read -r st t < <(put_time "$SVC/v1/objects/cold-$r")
        [ "$st" = 201 ] || { say "warm PUT answered $st"; exit 1; }
        warm+=("$t")
    done
    after="$(sts_calls)"
    echo "$cold ${warm[*]} $((after - before))" >>"$WORK/coldwarm.txt"
    stop_service
done
read -r COLD_MS WARM_MS COLD_STS < <(python3 - "$WORK/coldwarm.txt" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
cold = statistics.median(r[0] for r in rows) * 1000
warm = statistics.median(x for r in rows for x in r[1:4]) * 1000
print(f"{cold:.1f} {warm:.1f} {max(int(r[4]) for r in rows)}")
PY
)
fig COLD_MS "$COLD_MS"
fig WARM_MS "$WARM_MS"
fig COLD_STS "$COLD_STS"

# --- 3. 1 KiB PUT: through the service vs straight to the same S3 stand-in ------------------------
WRK=(wrk -t1 -c"$PUT_CONC" --latency -s bench/put.lua)
wrk_result() { # label url [wrk options] -> RESULT fields, plus the CPU time the
    # service ($PID) and the S3 stand-in ($CPU_SINK_PID) used during the run
    local label="$1" url="$2" s0 k0
    shift 2
    say "PUT $label: ${WRK[*]} $* $url"
    s0="$(cpu_ticks "$PID")"
    k0="$(cpu_ticks "$CPU_SINK_PID")"
    "${WRK[@]}" "$@" "$url" >"$WORK/wrk-$label.txt"
    echo "$(sed -n 's/^RESULT //p' "$WORK/wrk-$label.txt")" \
        "cpu_svc_us=$((($(cpu_ticks "$PID") - s0) * 1000000 / CLK_TCK))" \
        "cpu_sink_us=$((($(cpu_ticks "$CPU_SINK_PID") - k0) * 1000000 / CLK_TCK))"
}
SVC_PATH="/v1/objects/bench"
SINK_PATH="/$RIG_BUCKET/${PREFIX}direct"

# 3a. S3 at a distance: s3-sink answering after S3_LATENCY_MS.
start_service "$FAR" "$LOGS/service-far.log"
PID="$svc_pid"
CPU_SINK_PID="$FAR_PID"
curl -sf -o /dev/null "$SVC/readyz" || { say "not ready"; cat "$LOGS/service-far.log" >&2; exit 1; }
say "warm-up: 3 s each way, $BUSY_CONC connections"
wrk -t1 -c"$BUSY_CONC" -s bench/put.lua -d3s "$FAR$SINK_PATH" >/dev/null
wrk -t1 -c"$BUSY_CONC" -s bench/put.lua -d3s "$SVC$SVC_PATH" >/dev/null
fig FAR_DIRECT "$(wrk_result far-direct "$FAR$SINK_PATH" -d"${PUT_SECS}s")"
fig FAR_SERVICE "$(wrk_result far-service "$SVC$SVC_PATH" -d"${PUT_SECS}s")"
WRK=(wrk -t1 -c"$BUSY_CONC" --latency -s bench/put.lua)
fig BUSY_DIRECT "$(wrk_result busy-direct "$FAR$SINK_PATH" -d"${PUT_SECS}s")"
fig BUSY_SERVICE "$(wrk_result busy-service "$SVC$SVC_PATH" -d"${PUT_SECS}s")"
fig FAR_CMD "BENCH_BODY=1k.bin wrk -t1 -c$PUT_CONC --latency -s bench/put.lua -d${PUT_SECS}s URL"
fig BUSY_CMD "BENCH_BODY=1k.bin ${WRK[*]} -d${PUT_SECS}s URL"
stop_service

# 3b. An S3 stand-in answering at once: the CPU ceiling of this machine.
sts_base="$(sts_calls)"
start_service "$SINK" "$LOGS/service-put.log"
PID="$svc_pid"
CPU_SINK_PID="$SINK_PID"
curl -sf -o /dev/null "$SVC/readyz" || { say "not ready"; cat "$LOGS/service-put.log" >&2; exit 1; }
fig IDLE_RSS_KB "$(status_field "$PID" VmRSS | tr -d ' kB')"
fig IDLE_HWM_KB "$(status_field "$PID" VmHWM | tr -d ' kB')"
fig IDLE_FDS "$(fds "$PID")"
DIRECT_URL="$SINK$SINK_PATH"
SVC_URL="$SVC$SVC_PATH"
WRK=(wrk -t1 -c"$PUT_CONC" --latency -s bench/put.lua)
say "warm-up: 3 s each way"
"${WRK[@]}" -d3s "$DIRECT_URL" >/dev/null
"${WRK[@]}" -d3s "$FWD$SINK_PATH" >/dev/null
"${WRK[@]}" -d3s "$SVC_URL" >/dev/null
fig PUT_DIRECT "$(wrk_result direct "$DIRECT_URL" -d"${PUT_SECS}s")"
fig PUT_FORWARDER "$(wrk_result forwarder "$FWD$SINK_PATH" -d"${PUT_SECS}s")"
fig PUT_SERVICE "$(wrk_result service "$SVC_URL" -d"${PUT_SECS}s")"
fig PUT_CMD_DIRECT "BENCH_BODY=1k.bin ${WRK[*]} -d${PUT_SECS}s http://S3_SINK/{bucket}/{key}"
fig PUT_CMD_SERVICE "BENCH_BODY=1k.bin ${WRK[*]} -d${PUT_SECS}s http://SERVICE/v1/objects/bench"
# One request at a time: the latency the service adds, without queueing.
WRK=(wrk -t1 -c1 --latency -s bench/put.lua)
fig SEQ_DIRECT "$(wrk_result seq-direct "$DIRECT_URL" -d"${SEQ_SECS}s")"
fig SEQ_SERVICE "$(wrk_result seq-service "$SVC_URL" -d"${SEQ_SECS}s")"
fig SEQ_CMD "BENCH_BODY=1k.bin ${WRK[*]} -d${SEQ_SECS}s URL"

# --- 4. AssumeRoleWithWebIdentity per 10,000 requests --------------------------------------------
before="$(sts_calls)"
say "10,000 PUTs through the service, counting STS calls at the proxy"
hey -n 10000 -c "$PUT_CONC" -m PUT -D "$BODY" -T application/octet-stream "$SVC_URL" >"$WORK/hey-10k.txt"
after="$(sts_calls)"
ok10k="$(awk '/\[201\]/ {print $2}' "$WORK/hey-10k.txt")"
fig STS_10K "$((after - before))"
fig STS_SINCE_START "$((after - sts_base))"
fig OK_10K "${ok10k:-0}"
fig STS_CMD "hey -n 10000 -c $PUT_CONC -m PUT -D 1k.bin http://SERVICE/v1/objects/bench; curl FAULT_PROXY/__counts"

# --- 5. load: LOAD_CONC connections for LOAD_SECS ------------------------------------------------
HEY_LOAD=(hey -c "$LOAD_CONC" -m PUT -D "$BODY" -T application/octet-stream)
say "load: pre-warm ${LOAD_CONC} connections for 5 s"
"${HEY_LOAD[@]}" -z 5s "$SVC_URL" >"$WORK/hey-prewarm.txt"
sleep 2
fig LOAD_RSS_BEFORE_KB "$(status_field "$PID" VmRSS | tr -d ' kB')"
fig LOAD_FDS_BEFORE "$(fds "$PID")"
(
    t0=$(date +%s)
    while kill -0 "$PID" 2>/dev/null; do
        echo "$(($(date +%s) - t0)) $(status_field "$PID" VmRSS | tr -d ' kB') $(fds "$PID")"
        sleep 5
    done
) >"$WORK/load-samples.txt" 2>/dev/null &
sampler=$!
pids+=("$sampler")
say "load: ${HEY_LOAD[*]} -z ${LOAD_SECS}s $SVC_URL"
"${HEY_LOAD[@]}" -z "${LOAD_SECS}s" "$SVC_URL" >"$WORK/hey-load.txt"
kill "$sampler" 2>/dev/null || true
sleep 3
fig LOAD_RSS_AFTER_KB "$(status_field "$PID" VmRSS | tr -d ' kB')"
fig LOAD_HWM_KB "$(status_field "$PID" VmHWM | tr -d ' kB')"
fig LOAD_FDS_AFTER "$(fds "$PID")"
fig LOAD_SUMMARY "$(python3 - "$WORK/hey-load.txt" "$WORK/load-samples.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
statuses = dict((int(c), int(n)) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", text))
errors = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s+.*$", text.split("Error distribution:")[1], re.M)) if "Error distribution:" in text else 0
rps = re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)
p50 = float(re.search(r"50% in ([\d.]+)", text).group(1)) * 1000
p99 = float(re.search(r"99% in ([\d.]+)", text).group(1)) * 1000
samples = [list(map(int, l.split())) for l in open(sys.argv[2]) if len(l.split()) == 3]
rss = [s[1] for s in samples]
fds = [s[2] for s in samples]
half = len(rss) // 2
first_max = max(rss[:half]) if half else 0
second_max = max(rss[half:]) if rss else 0
other = sum(n for c, n in statuses.items() if c != 201)
print(f"ok={statuses.get(201, 0)} other={other} errors={errors} rps={float(rps):.0f} "
      f"p50_ms={p50:.1f} p99_ms={p99:.1f} rss_min_kb={min(rss) if rss else 0} rss_max_kb={max(rss) if rss else 0} "
      f"rss_first_half_max_kb={first_max} rss_second_half_max_kb={second_max} "
      f"fds_min={min(fds) if fds else 0} fds_max={max(fds) if fds else 0} samples={len(samples)}")
PY
)"
stop_service

# --- 6. replication of SIZE_MIB from fake-gcs-server to moto ------------------------------------------
say "replication: RIG_DIR=$RIG_DIR PROFILE=release SIZE_MIB=$SIZE_MIB scripts/measure-replication.sh"
PROFILE=release SIZE_MIB="$SIZE_MIB" scripts/measure-replication.sh >"$WORK/replication.txt" 2>"$LOGS/replication.err" || {
    say "scripts/measure-replication.sh failed"; tail -20 "$LOGS/replication.err" >&2; exit 1; }
cat "$WORK/replication.txt" >&2
fig REPLICATION "$(python3 - "$WORK/replication.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
svc = re.search(r"service \(\w+ build\): ([\d.]+) s, ([\d.]+) MB/s.*?VmHWM\) ([\d.]+) MiB \(after start, before replication: ([\d.]+) MiB\)", t)
plain = re.search(r"plain tools .*?: ([\d.]+) s, ([\d.]+) MB/s.*?python peak RSS ([\d.]+) MiB", t)
print(f"svc_secs={svc.group(1)} svc_mbs={svc.group(2)} svc_hwm_mib={svc.group(3)} svc_idle_hwm_mib={svc.group(4)} "
      f"plain_secs={plain.group(1)} plain_mbs={plain.group(2)} plain_rss_mib={plain.group(3)}")
PY
)"
fig SIZE_MIB "$SIZE_MIB"
fig LOAD_AFTER "$(cut -d' ' -f1-3 /proc/loadavg)"
fig PUT_SECS "$PUT_SECS"; fig PUT_CONC "$PUT_CONC"; fig BUSY_CONC "$BUSY_CONC"; fig SEQ_SECS "$SEQ_SECS"
fig S3_LATENCY_MS "$S3_LATENCY_MS"
fig LOAD_SECS "$LOAD_SECS"; fig LOAD_CONC "$LOAD_CONC"; fig STARTS "$STARTS"; fig COLD_STARTS "$COLD_STARTS"
fig FD_MARGIN "$FD_MARGIN"

# --- the table --------------------------------------------------------------------------------
python3 bench/report.py "$FIG" "$RESULTS"
