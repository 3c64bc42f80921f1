#!/usr/bin/env bash
# Installs tcpwatchd from this checkout as a systemd service, the way Debian 12 and Ubuntu 24.04 allow
# (PEP 668: no pip into the system Python): a virtualenv under /opt/tcpwatchd, the program linked at
# /usr/local/bin/tcpwatchd (the unit's ExecStart), the unit in /etc/systemd/system, and the example
# config at /etc/tcpwatchd/tcpwatchd.toml unless one is there already. Run as root:
#   sudo scripts/install.sh            install or upgrade, then `systemctl daemon-reload`
#   sudo scripts/install.sh --enable   ... and `systemctl enable --now tcpwatchd`
# PREFIX, BINDIR, ETCDIR and UNITDIR override the four locations (the tests install into a scratch dir).
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/opt/tcpwatchd}
BINDIR=${BINDIR:-/usr/local/bin}
ETCDIR=${ETCDIR:-/etc/tcpwatchd}
UNITDIR=${UNITDIR:-/etc/systemd/system}
enable=0
[[ "${1:-}" == "--enable" ]] && enable=1

if [[ $EUID -ne 0 ]]; then
    echo "install: run as root (it writes $PREFIX, $BINDIR, $ETCDIR and $UNITDIR)" >&2
    exit 2
fi

# systemd-python compiles against libsystemd; python3-venv provides ensurepip on Debian and Ubuntu.
pkgs=(python3 python3-venv python3-dev gcc pkg-config libsystemd-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x "$PREFIX/bin/python" ]]; then
    python3 -m venv "$PREFIX"
fi
"$PREFIX/bin/python" -m pip install -q --disable-pip-version-check --upgrade .
mkdir -p "$BINDIR"
ln -sfn "$PREFIX/bin/tcpwatchd" "$BINDIR/tcpwatchd"

install -d -m 0755 "$ETCDIR"
if [[ ! -e "$ETCDIR/tcpwatchd.toml" ]]; then
    install -m 0644 config.example.toml "$ETCDIR/tcpwatchd.toml"
else
    echo "install: keeping the existing $ETCDIR/tcpwatchd.toml"
fi
"$BINDIR/tcpwatchd" check-config "$ETCDIR/tcpwatchd.toml"

install -d -m 0755 "$UNITDIR"
install -m 0644 deploy/systemd/tcpwatchd.service "$UNITDIR/tcpwatchd.service"
if [[ -d /run/systemd/system && "$UNITDIR" == /etc/systemd/system ]]; then
    systemctl daemon-reload
    if (( enable )); then
        systemctl enable --now tcpwatchd
    fi
fi
echo "install: tcpwatchd $("$BINDIR/tcpwatchd" --version | cut -d' ' -f2) in $PREFIX; unit $UNITDIR/tcpwatchd.service"
(( enable )) || echo "install: start it with: systemctl enable --now tcpwatchd"
