# Shared by the benchmarks that run beside rclone on a rig of their own
# (bench/sync.sh, bench/verify.sh). Source it after setting BENCH_NAME (the
# name in messages) and RIG_DIR; it sets ROOT and cd's there.
#
#   bench_need_rclone          installs rclone (Debian package) when missing
#   bench_rig_up               starts the rig in RIG_DIR, stopped on exit
#   bench_run FILTER LOG       runs the ignored integration tests FILTER,
#                              their BENCH lines on stdout, all in LOG; fails
#                              when they fail
#   bench_write RESULTS LOG TITLE LINE...
#                              writes RESULTS: TITLE, the LINEs, a table of
#                              LOG's BENCH lines, then the sections (## ...)
#                              RESULTS had, kept across runs

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { echo "bench/$BENCH_NAME: $*" >&2; }

bench_need_rclone() {
    command -v rclone >/dev/null 2>&1 && return 0
    say "installing rclone (Debian package)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq rclone >/dev/null
}

bench_rig_up() {
    mkdir -p "$RIG_DIR"
    trap '"$ROOT/scripts/rig-down.sh" >/dev/null 2>&1 || true' EXIT
    "$ROOT/scripts/rig-up.sh" >"$RIG_DIR/rig-up.log" 2>&1
}

bench_run() {
    local filter="$1" log="$2"
    say "running (log in $log)"
    cargo test --test integration "$filter" -- --ignored --nocapture --test-threads 1 2>&1 |
        tee "$log" | grep -o 'BENCH .*' || true
    grep -q '^test result: ok' "$log" || { say "the benchmark failed; see $log"; exit 1; }
}

bench_write() {
    local results="$1" log="$2" title="$3" keep
    shift 3
    keep="$(sed -n '/^## /,$p' "$results" 2>/dev/null || true)"
    {
        echo "# $title"
        echo
        printf '%s\n' "$@"
        echo
        echo "| figure | value | unit |"
        echo "|---|---:|---|"
        grep -o 'BENCH .*' "$log" | awk '{printf "| %s | %s | %s |\n", $2, $3, $4}'
        [ -z "$keep" ] || printf '\n%s\n' "$keep"
    } >"$results"
    say "wrote $results"
}

rclone_version() { rclone version 2>/dev/null | head -n1 | awk '{print $2}'; }
