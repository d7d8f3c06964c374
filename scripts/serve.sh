#!/usr/bin/env bash
# Install into .venv and run the whole service: Discord bot + engine + admin panel (python -m bot).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
exec .venv/bin/python -m bot "$@"
