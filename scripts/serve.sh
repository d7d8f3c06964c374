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
# the doctor checks the machine and the settings first and stops on what would make the start fail
# (SKIP_DOCTOR=1 skips it, e.g. under a supervisor that restarts the service)
if [ -z "${SKIP_DOCTOR:-}" ] && ! .venv/bin/python -m bot doctor; then
    echo "scripts/serve.sh: fix the FAIL lines above, then run it again" >&2
    exit 1
fi
exec .venv/bin/python -m bot "$@"
