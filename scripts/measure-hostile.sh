#!/usr/bin/env bash
# Peak memory of hostile and large bodies under a buffer budget, on the local
# rig (moto with IAM auth on). For each case, each budget (BUDGETS, MiB,
# default "128 256") and each concurrency (1 and 10 at once), a fresh
# service instance is started with BUFFER_BUDGET_BYTES=budget, sent the
# requests, and its peak RSS growth measured: VmHWM after the requests minus
# VmHWM once idle after start (/proc/PID/status). Target: growth under the
# budget plus 32 MiB.
#
#   events-array    POST /events, binary mode, a 32 MB JSON array [0,0,…] as
#                   the data of a storage finalized event (answers 400)
#   put-metadata    POST /pubsub, an 11 MB push whose put command has 720,000
#                   metadata entries (answers 400 invalid_metadata)
#   pubsub-put      POST /pubsub, a 10 MB push of a put command (a 7 MiB
#                   object, written to moto)
#   structured-put  POST /events, a 30 MB structured messagePublished event
#                   whose message is a put command (a 21 MiB object)
#
#   scripts/measure-hostile.sh                  release build
#   PROFILE=dev scripts/measure-hostile.sh      dev build
#   CASES="events-array" BUDGETS=128 scripts/measure-hostile.sh
#   SERVICE_BIN=/tmp/old/gcp-aws-bridge LABEL=before APPEND=1 scripts/measure-hostile.sh
#
# Prints the table and writes it to OUT (default bench/HOSTILE_RESULTS.md;
# APPEND=1 adds a section to it instead). Exits 1 when a case is over its
# target. Not a test: a request that waits more than 10 s for the budget
# answers 503 (a trigger redelivers it), which is counted, not a failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CASES="${CASES:-events-array put-metadata pubsub-put structured-put}"
BUDGETS="${BUDGETS:-128 256}"
CONCURRENCY="${CONCURRENCY:-1 10}"
OUT="${OUT:-$ROOT/bench/HOSTILE_RESULTS.md}"
LABEL="${LABEL:-$(git -C "$ROOT" rev-parse --short HEAD)}"
cd "$ROOT"
# shellcheck source=lib/measure.sh
source "$ROOT/scripts/lib/measure.sh"

measure_setup moto
start_metadata_emulator

PREFIX="${RIG_ALLOWED_PREFIX:-allowed/}measure-hostile-$(date +%s%N)/"

# The bodies, built once.
"$PY" - "$WORK" <<'PY'
import base64, json, sys
work = sys.argv[1]

def write(name, data):
    with open(f"{work}/{name}", "wb") as f:
        f.write(data)

# 32 MB: [0,0,…,0]
n = 32_000_000
write("events-array", b"[" + b"0," * ((n - 3) // 2) + b"0]")

# 11 MB push: a put whose metadata has 720,000 entries.
meta = ",".join(f'"{i:06}":""' for i in range(720_000))
cmd = ('{"op":"put","key":"hostile/metadata","body":"","metadata":{' + meta + "}}").encode()
write("put-metadata", json.dumps({"message": {"data": base64.b64encode(cmd).decode(), "messageId": "1"},
                                  "subscription": "projects/p/subscriptions/s"}).encode())

def put(key, size):
    return json.dumps({"op": "put", "key": key, "body": "x" * size}).encode()

# 10 MB push of a put.
write("pubsub-put", json.dumps({"message": {"data": base64.b64encode(put("hostile/pubsub", 7 * 1024 * 1024)).decode(),
                                            "messageId": "1"},
                                "subscription": "projects/p/subscriptions/s"}).encode())

# 30 MB structured messagePublished event of a put.
write("structured-put", json.dumps({
    "specversion": "1.0", "id": "1", "type": "google.cloud.pubsub.topic.v1.messagePublished",
    "source": "//pubsub.googleapis.com/projects/p/topics/t",
    "data": {"message": {"data": base64.b64encode(put("hostile/structured", 21 * 1024 * 1024)).decode(),
                         "messageId": "1"},
             "subscription": "projects/p/subscriptions/s"},
}).encode())
PY

# curl arguments of each case.
case_args() {
    case "$1" in
    events-array)
        echo "/events -H content-type:application/json -H ce-specversion:1.0 -H ce-id:1 -H ce-type:google.cloud.storage.object.v1.finalized -H ce-source://storage.googleapis.com/projects/_/buckets/b -H ce-subject:objects/o"
        ;;
    put-metadata | pubsub-put) echo "/pubsub -H content-type:application/json" ;;
    structured-put) echo "/events -H content-type:application/cloudevents+json" ;;
    *)
        echo "measure: unknown case $1" >&2
        exit 2
        ;;
    esac
}

rm -f "$OUT.tmp"
ROWS="$WORK/rows"
: >"$ROWS"
over=0
for c in $CASES; do
    body="$WORK/$c"
    size_mb="$(awk -v b="$(stat -c %s "$body")" 'BEGIN {printf "%.1f", b / 1e6}')"
    read -r path headers <<<"$(case_args "$c")"
    # shellcheck disable=SC2206
    hdrs=($headers)
    for budget in $BUDGETS; do
        for n in $CONCURRENCY; do
            start_service "measure-hostile" S3_PREFIX="$PREFIX" \
                BUFFER_BUDGET_BYTES="$((budget * 1024 * 1024))"
            log "$c ($size_mb MB) x $n, budget $budget MiB"
            rm -f "$WORK"/status-*
            reqs=()
            for ((i = 0; i < n; i++)); do
                curl -s -o /dev/null -w '%{http_code}\n' -X POST "${hdrs[@]}" \
                    --data-binary "@$body" "http://127.0.0.1:$PORT$path" >"$WORK/status-$i" &
                reqs+=($!)
            done
            for p in "${reqs[@]}"; do wait "$p" || true; done
            hwm="$(vm_hwm)"
            answers="$(cat "$WORK"/status-* | sort | uniq -c | awk '{printf "%s%s x %s", (NR > 1 ? ", " : ""), $1, $2}')"
            alive="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz" || true)"
            stop_service
            echo "$c|$size_mb|$budget|$n|$answers|$alive|$HWM_IDLE|$hwm" >>"$ROWS"
        done
    done
done

TABLE="$("$PY" - "$ROWS" <<'PY'
import sys
rows = [l.rstrip("\n").split("|") for l in open(sys.argv[1]) if l.strip()]
print("| case | body MB | budget MiB | at once | answers | alive after | idle MiB | peak MiB | growth MiB | target MiB | within |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
over = 0
for case, size, budget, n, answers, alive, idle, hwm in rows:
    idle, hwm, budget_i = int(idle) / 1024, int(hwm) / 1024, int(budget)
    growth = hwm - idle
    target = budget_i + 32
    ok = growth < target
    over += not ok
    print(f"| {case} | {size} | {budget} | {n} | {answers} | {alive} | {idle:.0f} | {hwm:.0f} | {growth:.0f} | {target} | {'yes' if ok else '**no**'} |")
sys.exit(1 if over else 0)
PY
)" || over=1

HEAD="## $LABEL ($PROFILE build, $(date -u +%Y-%m-%d))"
echo "$HEAD"
echo
echo "$TABLE"
{
    if [ "${APPEND:-0}" != 1 ]; then
        echo "# Hostile bodies: peak RSS growth under BUFFER_BUDGET_BYTES"
        echo
        echo "Written by \`scripts/measure-hostile.sh\` (see bench/README.md): a fresh"
        echo "instance per row; growth = VmHWM after the requests minus VmHWM idle after"
        echo "start; target = budget + 32 MiB; \"alive after\" is /healthz once done."
        echo
    fi
    echo "$HEAD"
    echo
    echo "$TABLE"
    echo
} >>"$OUT.tmp"
if [ "${APPEND:-0}" = 1 ]; then
    cat "$OUT.tmp" >>"$OUT"
else
    mv "$OUT.tmp" "$OUT"
fi
rm -f "$OUT.tmp"
exit "$over"
