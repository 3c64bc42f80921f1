#!/usr/bin/env bash
# Installs what tcpwatchd needs and runs the daemon in the foreground (embedded default config unless
# you pass -c FILE). Run as root for full attribution: `sudo scripts/run.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/tcpwatchd run "$@"
