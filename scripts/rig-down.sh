#!/usr/bin/env bash
# Stop the stand-ins scripts/rig-up.sh started: each component's whole process
# group (the Pub/Sub emulator's gcloud wrapper leaves its Java server behind
# otherwise). Safe to run when nothing is up.
#
#   scripts/rig-down.sh [moto] [pubsub] [gcs]    (default: all)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RIG_DIR="${RIG_DIR:-$ROOT/.run}"
[ -d "$RIG_DIR" ] || exit 0
STOP_SECS=15

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(moto pubsub gcs)

group_alive() { kill -0 -- "-$1" 2>/dev/null; }

for c in "${components[@]}"; do
    pidfile="$RIG_DIR/$c.pid"
    [ -f "$pidfile" ] || continue
    pgid="$(cat "$pidfile")"
    if [[ "$pgid" =~ ^[0-9]+$ ]] && [ "$pgid" -gt 1 ] && group_alive "$pgid"; then
        kill -TERM -- "-$pgid" 2>/dev/null
        deadline=$((SECONDS + STOP_SECS))
        while group_alive "$pgid" && [ $SECONDS -lt $deadline ]; do
            sleep 0.2
        done
        if group_alive "$pgid"; then
            echo "rig-down: $c (pgid $pgid) ignored SIGTERM for ${STOP_SECS}s; killing" >&2
            kill -KILL -- "-$pgid" 2>/dev/null
        fi
        echo "rig-down: $c stopped" >&2
    fi
    rm -f "$pidfile" "$RIG_DIR/$c.env"
done

# rig.env lists only what is still up.
if [ -f "$RIG_DIR/rig.env" ]; then
    tmp="$RIG_DIR/rig.env.tmp"
    : >"$tmp"
    for c in moto pubsub gcs; do
        [ -f "$RIG_DIR/$c.env" ] && sed 's/^/export /' "$RIG_DIR/$c.env" >>"$tmp"
    done
    if [ -s "$tmp" ]; then mv "$tmp" "$RIG_DIR/rig.env"; else rm -f "$tmp" "$RIG_DIR/rig.env"; fi
fi
exit 0
