#!/usr/bin/env bash
# Installs what the tests need, then runs the linters, the type checker and the whole test suite.
# Run as root: the integration tests build real sockets in private network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test
.venv/bin/ruff check tcpwatchd tests benchmarks
.venv/bin/ruff format --check tcpwatchd tests benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest -ra "$@"
