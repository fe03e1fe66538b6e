#!/usr/bin/env bash
# Install everything the test suite needs, then run it. Used by the README and .ci/run.
#   - Debian's dcmtk (dcm2json, dcmconv, dcmcjpeg, dcmcjpls, dcmcrle, dcmodify): references
#   - a virtual environment .venv with dcmweb-static and its test extras
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dcm2json >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dcmtk >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/python -m ruff check dcmweb_static tests scripts benchmarks
exec .venv/bin/python -m pytest "$@"
