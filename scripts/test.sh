#!/usr/bin/env bash
# Install everything the test suite needs, then run it. Used by the README and .ci/run.
#   - Debian's dcmtk (dcm2json, dcmconv, dcmcjpeg, dcmcjpls, dcmcrle, dcmodify): references;
#     nginx-light and chromium for the serving and OHIF tests (npm fetches @ohif/app, and
#     the Azure Blob emulator azurite, into the test cache: tests/ohif.py, tests/cloudservers.py)
#   - a virtual environment .venv with dcmweb-static and its test extras
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: dcmtk (reference tools), nginx-light (serving test), chromium (OHIF e2e)
need=()
command -v dcm2json >/dev/null 2>&1 || need+=(dcmtk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(npm)  # @ohif/app and azurite
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    # keep the packages' own services (nginx on port 80) from starting: the tests start
    # their own nginx on 127.0.0.1 and stop it
    policy=/usr/sbin/policy-rc.d
    added_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod +x "$policy"
        added_policy=1
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
    if [ -n "$added_policy" ]; then $SUDO rm -f "$policy"; fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/python -m ruff check dcmweb_static tests scripts benchmarks plugins
exec .venv/bin/python -m pytest "$@"
