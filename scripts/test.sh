#!/usr/bin/env bash
# Install into .venv (with the test tools) and run the whole test suite.
# The browser tests need Debian's chromium; as root this script installs it when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing chromium for the browser tests" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
    else
        echo "warning: chromium is not installed (apt-get install chromium); browser tests will fail" >&2
    fi
fi
# systemd-analyze checks the units in docs/deploy/ (without it those tests check them with a parser only)
if ! command -v systemd-analyze >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing systemd (systemd-analyze) for the deploy unit checks" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null 2>&1 \
        || echo "warning: systemd could not be installed; the units are checked with a parser only" >&2
fi
# inductor on the CPU compiles C++: the ATTENTION_BACKEND compile-cache test needs g++ (it is skipped without)
if ! command -v g++ >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing g++ for the inductor test" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null 2>&1 \
        || echo "warning: g++ could not be installed; the inductor test is skipped" >&2
fi
scripts/setup-venv.sh dev
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
exec .venv/bin/python -m pytest "$@"
