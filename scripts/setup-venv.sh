#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv.
# usage: scripts/setup-venv.sh [extra]   e.g. "dev" for the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch is pinned to 2.13.0 in pyproject.toml; installing it first by exact version lets pip use a
# local CPU wheel where one is offered instead of pulling a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
spec="."
if [ -n "${1:-}" ]; then spec=".[$1]"; fi
.venv/bin/python -m pip install --quiet -e "$spec"
