#!/usr/bin/env bash
# Installs what tcpwatchd needs on a fresh Debian/Ubuntu machine (run as root), into ./.venv.
#   scripts/bootstrap.sh          runtime only
#   scripts/bootstrap.sh --test   plus the test tools (promtool, Prometheus, node_exporter, linters)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

# systemd-python compiles against libsystemd; iproute2 gives `ss` and `ip` (tests, benchmarks).
pkgs=(python3 python3-venv python3-dev gcc pkg-config libsystemd-dev iproute2 curl)
if (( want_test )); then
    # promtool + a real Prometheus for the alert-rule tests, node_exporter for the benchmark,
    # systemd-analyze for the unit-file tests, tmux for the `top` terminal tests.
    pkgs+=(prometheus prometheus-node-exporter systemd tmux)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
    if [[ $EUID -ne 0 ]]; then
        echo "bootstrap: missing system packages (${missing[*]}); run as root or install them" >&2
        exit 2
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The tests start their own Prometheus: keep the packages' services from starting (policy-rc.d).
    added_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if (( added_policy )); then rm -f /usr/sbin/policy-rc.d; fi
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$PY" -m venv .venv
fi
extra=""
(( want_test )) && extra="[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extra}"
