#!/usr/bin/env bash
# Deployment tool checks: cfn-lint, `sam validate --lint` and `sam build` on template.yaml.
#
# aws-sam-cli pins its own dependency versions (boto3, pydantic, ...), so it lives in a
# separate virtualenv (.venv-tools) and never touches the project's .venv.
#
# Usage: .ci/tools.sh            install (once) and run every check
#        SKIP_BUILD=1 .ci/tools.sh   lint/validate only
set -euo pipefail

cd "$(dirname "$0")/.."

TOOLS_VENV="${TOOLS_VENV:-.venv-tools}"
export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
# `sam validate` and `sam build` never need real credentials, but botocore wants a region and
# some value to sign with; fake ones make sure nothing can reach a real account.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"

# `sam build` with the python3.12 runtime looks for `python3.12` on PATH; pyenv machines keep
# it outside PATH, so put its directory first when it is there.
PY312_DIR=/root/.pyenv/versions/3.12.1/bin
if [[ -x "$PY312_DIR/python3.12" ]]; then
    export PATH="$PY312_DIR:$PATH"
fi
PYTHON="$(command -v python3.12 || command -v python3)"

timed() {
    # timed LABEL CMD...: run CMD and print how long it took, so slow steps show up in CI logs.
    local label="$1"; shift
    local t0="$EPOCHREALTIME"
    "$@"
    awk -v a="$t0" -v b="$EPOCHREALTIME" -v l="$label" 'BEGIN { printf "[tools] %-16s %6.1fs\n", l, b - a }'
}

install_tools() {
    "$PYTHON" -m venv "$TOOLS_VENV"
    "$TOOLS_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$TOOLS_VENV/bin/python" -m pip install --quiet aws-sam-cli cfn-lint
    touch "$TOOLS_VENV/.installed"
}

if [[ ! -f "$TOOLS_VENV/.installed" ]]; then
    timed "install tools" install_tools
fi
export PATH="$PWD/$TOOLS_VENV/bin:$PATH"

echo "[tools] $(sam --version) / cfn-lint $(cfn-lint --version | awk '{print $NF}')"

timed "cfn-lint" cfn-lint template.yaml

sam_validate() {
    # --lint runs cfn-lint inside sam; older sam releases lack it, plain validate still checks
    # the transform.
    if sam validate --help | grep -q -- '--lint'; then
        sam validate --lint --template-file template.yaml
    else
        sam validate --template-file template.yaml
    fi
}
timed "sam validate" sam_validate

if [[ "${SKIP_BUILD:-0}" != "1" ]]; then
    timed "sam build" sam build --template-file template.yaml --build-dir .aws-sam/build
fi

echo "[tools] all checks passed"
