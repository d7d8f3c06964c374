#!/usr/bin/env bash
# Install into .venv and run the whole service: Discord bot + engine + admin panel (python -m bot).
set -euo pipefail
cd "$(dirname "$0")/.."
# with NATS_URL (in the environment or .env) the bot dispatches to GPU workers: install nats-py too
extra=""
if [ -n "${NATS_URL:-}" ] || grep -qE '^[[:space:]]*NATS_URL=[^[:space:]#]' .env 2>/dev/null; then
    extra=distributed
fi
scripts/setup-venv.sh $extra
exec .venv/bin/python -m bot "$@"
