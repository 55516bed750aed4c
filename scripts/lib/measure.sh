# shellcheck shell=bash
# Shared set-up of the measurement scripts (scripts/measure-*.sh): the rig,
# the builds, a work directory cleaned up on exit, the metadata emulator and
# the service itself. Source it after setting ROOT; then call, in order:
#
#   measure_setup COMPONENT...     rig-up COMPONENT..., rig.env, the rig's
#                                  Python ($PY), the builds ($BIN, from
#                                  PROFILE=release|dev), $WORK and its trap
#   start_metadata_emulator        sets $META_HOST
#   start_service SESSION VAR=VALUE...
#                                  the service on a free port with the rig's
#                                  AWS settings, AUTH_MODE=none and the extra
#                                  variables; waits for /readyz; sets $PORT,
#                                  $SVC and $HWM_IDLE
#   vm_hwm                         the service's peak RSS so far, in KiB
#   stop_service                   stops the service started last (SIGTERM)
#
# Builds go to $CARGO_TARGET_DIR when it is set, else target/.
# SERVICE_BIN=/path/to/gcp-aws-bridge measures that binary instead of the
# one built here (an older build, to compare); PROFILE then only names it.

RIG_DIR="${RIG_DIR:-$ROOT/.run}"
PROFILE="${PROFILE:-release}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

log() { echo "measure: $*" >&2; }

measure_setup() {
    "$ROOT/scripts/rig-up.sh" "$@" >&2
    # shellcheck disable=SC1091
    source "$RIG_DIR/rig.env"
    # shellcheck source=../../rig/venv.sh
    source "$ROOT/rig/venv.sh"
    PY="$RIG_PYTHON"
    # The dev build is the one scripts/run-local.sh makes (same features, so
    # the same artifacts); the metadata emulator only mints a few ID tokens,
    # so its dev build will do.
    cargo build --workspace --bins >&2
    EMU_BIN="$TARGET_DIR/debug/metadata-emulator"
    case "$PROFILE" in
    release)
        [ -n "${SERVICE_BIN:-}" ] || cargo build --release --bin gcp-aws-bridge >&2
        BIN="$TARGET_DIR/release/gcp-aws-bridge"
        ;;
    dev)
        BIN="$TARGET_DIR/debug/gcp-aws-bridge"
        ;;
    *)
        echo "PROFILE must be release or dev" >&2
        exit 2
        ;;
    esac

    BIN="${SERVICE_BIN:-$BIN}"

    WORK="$(mktemp -d)"
    pids=()
    trap measure_cleanup EXIT
}

measure_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until a file has a line matching a pattern, or fails.
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

# The metadata server the service gets its Google ID token from.
start_metadata_emulator() {
    "$EMU_BIN" >"$WORK/emu.out" 2>"$WORK/emu.err" &
    pids+=($!)
    wait_line "$WORK/emu.out" '^READY ' 20
    META_HOST="$(sed -n 's/^READY //p' "$WORK/emu.out" | head -1)"
}

start_service() {
    local session="$1" i
    shift
    PORT="$(free_port)"
    env -i PATH="$PATH" PORT="$PORT" RUST_LOG=info \
        TARGET_AUDIENCE=sts.amazonaws.com \
        AWS_ROLE_ARN="$RIG_ROLE_ARN" AWS_ROLE_SESSION_NAME="$session" \
        AWS_REGION="${RIG_AWS_REGION:-us-east-1}" AWS_ENDPOINT_URL="$RIG_MOTO_ENDPOINT" \
        S3_FORCE_PATH_STYLE=true S3_BUCKET="$RIG_BUCKET" \
        GCE_METADATA_HOST="$META_HOST" ID_TOKEN_SOURCE=metadata AUTH_MODE=none \
        "$@" "$BIN" >"$WORK/service.log" 2>&1 &
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
    HWM_IDLE="$(vm_hwm)"
}

vm_hwm() {
    awk '/^VmHWM/ {print $2}' "/proc/$SVC/status"
}

stop_service() {
    kill "$SVC" 2>/dev/null || true
    wait "$SVC" 2>/dev/null || true
}
