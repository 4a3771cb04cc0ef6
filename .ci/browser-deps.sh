#!/usr/bin/env bash
# Installs what the browser tests (tests/browser/, marker `browser`) need:
#   - Debian's `chromium` (only when /usr/bin/chromium is missing), and
#   - the Python `playwright` package into the project's venv (the `browser` extra).
#
# Never runs `playwright install`: that downloads Playwright's own browser builds from a CDN,
# which this environment cannot reach. The tests launch the system Chromium instead
# (executable_path=/usr/bin/chromium).
#
# Usage: .ci/browser-deps.sh          (idempotent; cheap when everything is present)
#        VENV=/path/to/venv .ci/browser-deps.sh
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

if [[ ! -x /usr/bin/chromium ]]; then
    echo "[browser-deps] installing Debian chromium"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
fi
echo "[browser-deps] $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium: version unknown')"

if ! "$VENV/bin/python" -c 'import playwright' 2>/dev/null; then
    echo "[browser-deps] installing the python playwright package (browser extra)"
    "$VENV/bin/python" -m pip install --quiet -e ".[browser]"
fi
"$VENV/bin/python" -c 'from importlib.metadata import version; print("[browser-deps] playwright", version("playwright"))'
