#!/usr/bin/env bash
# Start the local stand-ins the test suite and local runs use, each on a free
# port on 127.0.0.1, in its own process group:
#   moto    STS / IAM / S3 (rig/moto_server.py), seeded, IAM auth on
#   pubsub  the Google Cloud Pub/Sub emulator (gcloud), project bridge-test
#   gcs     fake-gcs-server, in-memory
#
#   scripts/rig-up.sh [moto] [pubsub] [gcs]      (default: all three)
#
# State lives in $RIG_DIR (default <repo>/.run): <name>.pid, logs/<name>.log,
# <name>.env, and rig.env, which holds `export KEY=VALUE` lines for every
# component that is up (source it, or read it as KEY=VALUE after "export ").
# A component that is already up is left as it is. scripts/rig-down.sh stops
# everything.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RIG_DIR="${RIG_DIR:-$ROOT/.run}"
mkdir -p "$RIG_DIR/logs"
RIG_DIR="$(cd "$RIG_DIR" && pwd)"

PUBSUB_PROJECT=bridge-test
MOTO_READY_SECS=30
PUBSUB_READY_SECS=60
GCS_READY_SECS=30

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(moto pubsub gcs)
for c in "${components[@]}"; do
    case "$c" in
    moto | pubsub | gcs) ;;
    *)
        echo "rig-up: unknown component '$c' (expected moto, pubsub or gcs)" >&2
        exit 2
        ;;
    esac
done

# shellcheck source=../rig/venv.sh
source "$ROOT/rig/venv.sh"
PY="$RIG_PYTHON"

log() { echo "rig-up: $*" >&2; }

# The process group a pid file names is alive.
is_up() {
    local pidfile="$RIG_DIR/$1.pid" pid
    [ -f "$pidfile" ] || return 1
    pid="$(cat "$pidfile")"
    [ -n "$pid" ] && kill -0 -- "-$pid" 2>/dev/null
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

started=()
on_exit() {
    local rc=$?
    if [ $rc -ne 0 ] && [ ${#started[@]} -gt 0 ]; then
        log "failed; stopping what this run started: ${started[*]}"
        RIG_DIR="$RIG_DIR" "$ROOT/scripts/rig-down.sh" "${started[@]}" >&2 || true
    fi
}
trap on_exit EXIT

# start NAME CMD...: run CMD in a new session (its own process group, so
# rig-down.sh can end it and everything it spawned), output to logs/NAME.log.
start() {
    local name="$1"
    shift
    : >"$RIG_DIR/logs/$name.log"
    # A background job of a non-interactive shell is not a group leader, so
    # setsid makes the new session in that same process: $! is its pgid.
    setsid "$@" </dev/null >>"$RIG_DIR/logs/$name.log" 2>&1 &
    echo $! >"$RIG_DIR/$name.pid"
    started+=("$name")
}

# wait_ready NAME URL SECS: poll URL until it answers 200, the process dies,
# or SECS pass.
wait_ready() {
    local name="$1" url="$2" secs="$3" deadline
    deadline=$((SECONDS + secs))
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        if ! is_up "$name"; then
            log "$name exited before it was ready; last lines of its log:"
            tail -n 30 "$RIG_DIR/logs/$name.log" >&2
            return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            log "$name not ready after ${secs}s ($url); last lines of its log:"
            tail -n 30 "$RIG_DIR/logs/$name.log" >&2
            return 1
        fi
        sleep 0.2
    done
}

up_moto() {
    local port url env
    port="$(free_port)"
    url="http://127.0.0.1:$port"
    start moto "$PY" "$ROOT/rig/moto_server.py" --port "$port"
    wait_ready moto "$url/moto-api/data.json" "$MOTO_READY_SECS"
    env="$("$PY" "$ROOT/rig/bootstrap_moto.py" "$url" 2>>"$RIG_DIR/logs/moto.log")" || {
        log "seeding moto failed; see $RIG_DIR/logs/moto.log"
        tail -n 30 "$RIG_DIR/logs/moto.log" >&2
        return 1
    }
    printf '%s\n' "$env" >"$RIG_DIR/moto.env"
}

up_pubsub() {
    local port
    port="$(free_port)"
    # A fresh data directory: no topics or subscriptions from an earlier run.
    rm -rf "$RIG_DIR/pubsub-data"
    mkdir -p "$RIG_DIR/pubsub-data"
    start pubsub gcloud beta emulators pubsub start \
        --host-port="127.0.0.1:$port" --project="$PUBSUB_PROJECT" \
        --data-dir="$RIG_DIR/pubsub-data" --quiet
    wait_ready pubsub "http://127.0.0.1:$port/v1/projects/$PUBSUB_PROJECT/topics" "$PUBSUB_READY_SECS"
    printf '%s\n' "PUBSUB_EMULATOR_HOST=127.0.0.1:$port" \
        "RIG_PUBSUB_PROJECT=$PUBSUB_PROJECT" >"$RIG_DIR/pubsub.env"
}

up_gcs() {
    local port url
    port="$(free_port)"
    url="http://127.0.0.1:$port"
    start gcs "$RIG_FAKE_GCS_BIN" -scheme http -host 127.0.0.1 -port "$port" \
        -backend memory -external-url "$url"
    wait_ready gcs "$url/storage/v1/b" "$GCS_READY_SECS"
    printf '%s\n' "STORAGE_EMULATOR_HOST=$url" >"$RIG_DIR/gcs.env"
}

t0=$SECONDS
for c in "${components[@]}"; do
    if is_up "$c"; then
        log "$c is already up (pid $(cat "$RIG_DIR/$c.pid")); leaving it"
        continue
    fi
    rm -f "$RIG_DIR/$c.pid" "$RIG_DIR/$c.env"
    "up_$c"
    log "$c ready"
done

# rig.env: every component that is up, whichever run started it.
tmp="$RIG_DIR/rig.env.tmp"
: >"$tmp"
for c in moto pubsub gcs; do
    if is_up "$c" && [ -f "$RIG_DIR/$c.env" ]; then
        sed 's/^/export /' "$RIG_DIR/$c.env" >>"$tmp"
    fi
done
mv "$tmp" "$RIG_DIR/rig.env"
trap - EXIT
log "up in $((SECONDS - t0))s; environment in $RIG_DIR/rig.env"
