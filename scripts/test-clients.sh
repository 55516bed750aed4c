#!/usr/bin/env bash
# Install the real AWS clients the credential-server tests run
# (tests/integration/sdk_clients.rs), when missing:
#   - the AWS CLI and boto3: rig/requirements.txt, through rig/venv.sh
#   - the AWS SDK for JavaScript v3: npm ci in tests/clients/js (package-lock.json)
#   - Terraform and its AWS provider: checked, not installed (/opt/tf-plugins,
#     as deploy/check.sh)
# A second run with nothing missing installs nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { echo "test-clients: $*" >&2; }

py="$("$ROOT/rig/venv.sh")"
"$py" -c 'import awscli, boto3' || { say "$py lacks awscli or boto3"; exit 1; }
say "AWS CLI $("$py" -c 'import awscli; print(awscli.__version__)'), boto3 in $py"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if command -v apt-get >/dev/null; then
        say "installing nodejs and npm (apt-get)"
        apt-get update -qq >&2 && apt-get install -y -qq nodejs npm >&2
    fi
fi
command -v node >/dev/null || { say "node is needed (apt-get install nodejs npm)"; exit 1; }
js="$ROOT/tests/clients/js"
stamp="$js/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$js/package-lock.json" -nt "$stamp" ]; then
    say "npm ci in tests/clients/js"
    (cd "$js" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
say "node $(node --version), @aws-sdk/client-s3 $(node -p 'require("'"$js"'/node_modules/@aws-sdk/client-s3/package.json").version')"

command -v terraform >/dev/null || { say "terraform is not on PATH"; exit 1; }
[ -d "${TF_PLUGIN_DIR:-/opt/tf-plugins}/registry.terraform.io/hashicorp/aws" ] ||
    { say "no AWS provider in ${TF_PLUGIN_DIR:-/opt/tf-plugins}"; exit 1; }
say "ready"
