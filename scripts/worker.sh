#!/usr/bin/env bash
# Run one GPU worker (python -m engine.worker) against NATS_URL; start one per GPU with DEVICE=cuda:N.
# usage: DEVICE=cuda:1 WORKER_NAME=box1-gpu1 scripts/worker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh distributed
exec .venv/bin/python -m engine.worker "$@"
