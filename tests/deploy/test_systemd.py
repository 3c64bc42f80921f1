"""The systemd unit: verified offline, its exposure measured, and its capabilities shown to be needed.

`systemd-analyze verify` insists that ExecStart= exists. The unit names /usr/local/bin/tcpwatchd, where
`pip install` as root puts it; the tests copy the unit and point that path at this checkout's `tcpwatchd`
(or /bin/true when it is not on PATH): only the path changes.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, require_tool

UNIT_DIR = DEPLOY / "systemd"
UNIT = UNIT_DIR / "tcpwatchd.service"
INSTALLED_PATH = "/usr/local/bin/tcpwatchd"
NEEDED_CAPS = {"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}

# Exposure measured by `systemd-analyze security --offline=yes` (systemd 252): it may only go down.
# The rest is what the daemon needs: the host's network namespace, netlink and IP sockets, /proc whole,
# ptrace-read and the two capabilities, other users' processes.
EXPOSURE_CEILING = {"": 1.8, "enforce.conf": 2.3, "scrape-from-network.conf": 1.9, "containers.conf": 2.2}
EXPOSURE_CEILING |= {"probe.conf": 2.0, "probe-reap.conf": 2.4}  # probing (docs/probing.md)


def _directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment; systemd allows a key more than once."""
    section, out = "", []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def _values(text: str, key: str) -> list[str]:
    return [v for _, k, v in _directives(text) if k == key]


def _install(tmp_path: Path, dropin: str) -> Path:
    """A copy of the unit (and one drop-in) runnable by systemd-analyze; returns the unit's path."""
    program = shutil.which("tcpwatchd") or "/bin/true"
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED_PATH, program))
    if dropin:
        (tmp_path / f"{UNIT.name}.d").mkdir()
        shutil.copy(UNIT_DIR / dropin, tmp_path / f"{UNIT.name}.d" / dropin)
    return unit


@pytest.mark.parametrize("dropin", sorted(EXPOSURE_CEILING))
def test_systemd_analyze_verify_is_clean(systemd_analyze: str, tmp_path: Path, dropin: str) -> None:
    unit = _install(tmp_path, dropin)
    done = subprocess.run([systemd_analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if str(tmp_path) in line]
    assert complaints == []  # unknown keys and bad values are only warnings: none allowed


@pytest.mark.parametrize(("dropin", "ceiling"), sorted(EXPOSURE_CEILING.items()))
def test_security_exposure_stays_at_or_below_its_level(
    systemd_analyze: str, tmp_path: Path, dropin: str, ceiling: float
) -> None:
    unit = _install(tmp_path, dropin)
    done = subprocess.run(
        [systemd_analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", done.stdout)
    assert found, done.stdout
    assert float(found.group(1)) <= ceiling, done.stdout
    assert found.group(2) in {"SAFE", "OK"}


def test_unit_contract() -> None:
    text = UNIT.read_text(encoding="utf-8")
    assert _values(text, "Type") == ["notify"]
    assert _values(text, "WatchdogSec")
    assert _values(text, "Restart") == ["on-failure"]
    assert _values(text, "ExecStart") == [f"{INSTALLED_PATH} run -c /etc/tcpwatchd/tcpwatchd.toml"]
    assert _values(text, "ExecReload")[-1] == "/bin/kill -HUP $MAINPID"
    assert _values(text, "DynamicUser") == ["yes"]
    assert _values(text, "PrivateUsers") == ["no"]  # capabilities must count in the host's user namespace


def test_containers_dropin_allows_setns_into_network_namespaces_only() -> None:
    text = (UNIT_DIR / "containers.conf").read_text(encoding="utf-8")
    assert _values(text, "RestrictNamespaces") == ["net"]  # the unit's "yes" would refuse setns()


@pytest.mark.parametrize(
    ("dropin", "caps"),
    [
        ("", NEEDED_CAPS),
        ("enforce.conf", {"CAP_NET_ADMIN"}),
        ("probe.conf", set()),  # verify: the unit's CAP_SYS_PTRACE; only pidfd_getfd is allowed back
        ("probe-reap.conf", {"CAP_NET_ADMIN", "CAP_SYS_ADMIN"}),
        ("containers.conf", {"CAP_SYS_ADMIN"}),
    ],
)
def test_capabilities_are_exactly_the_needed_ones(dropin: str, caps: set[str]) -> None:
    text = (UNIT_DIR / (dropin or UNIT.name)).read_text(encoding="utf-8")
    for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
        assert {cap for value in _values(text, key) for cap in value.split()} == caps


# Why those two capabilities: measured on the kernel, as the unit's transient user would be.
def _setpriv(caps: tuple[str, ...]) -> list[str]:
    base = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if not caps:
        return [*base, "--inh-caps=-all", "--bounding-set=-all"]
    listed = ",".join(f"+{c}" for c in caps)
    return [*base, f"--inh-caps={listed}", f"--ambient-caps={listed}", f"--bounding-set=-all,{listed}"]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("caps", "attributes"),
    [
        ((), False),
        (("dac_read_search",), False),
        (("sys_ptrace",), False),
        (("dac_read_search", "sys_ptrace"), True),
    ],
)
def test_reading_another_user_s_socket_fds_needs_both_capabilities(
    caps: tuple[str, ...], attributes: bool
) -> None:
    require_tool("setpriv")
    with socket.socket() as sock:  # never bound nor connected: only its inode matters
        inode = os.fstat(sock.fileno()).st_ino
        holder = subprocess.Popen(
            ["sleep", "60"], user=1000, group=1000, extra_groups=[], pass_fds=(sock.fileno(),)
        )
        try:
            script = f'for f in /proc/{holder.pid}/fd/*; do readlink "$f"; done'
            done = subprocess.run(
                [*_setpriv(caps), "sh", "-c", script], capture_output=True, text=True, timeout=30
            )
        finally:
            holder.kill()
            holder.wait(timeout=10)
    assert (f"socket:[{inode}]" in done.stdout) is attributes, done.stdout + done.stderr


_IN_PRIVATE_NETNS = """
import re, socket, subprocess, sys
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
client = socket.create_connection(listener.getsockname(), timeout=5)
server, _ = listener.accept()
as_user = sys.argv[1:]
def with_tcp_info(argv):  # sockets whose tcp_info ss could decode: its "rtt:" field, not "minrtt:"
    out = subprocess.run(argv + ["ss", "-tni"], capture_output=True, text=True, timeout=30).stdout
    return len(re.findall(r"\\srtt:", out))
write = subprocess.run(as_user + ["sh", "-c", "echo 601 > /proc/sys/net/ipv4/tcp_keepalive_time"],
                       capture_output=True, text=True, timeout=30)
# Only asks (access(2)): a non-net sysctl must stay closed to the user even with CAP_NET_ADMIN.
other = subprocess.run(as_user + ["test", "-w", "/proc/sys/vm/swappiness"], timeout=30)
print(with_tcp_info([]), with_tcp_info(as_user), write.returncode, other.returncode)
"""


@pytest.mark.integration
@pytest.mark.parametrize(("caps", "may_write"), [((), False), (("net_admin",), True)])
def test_sock_diag_needs_no_capability_and_net_sysctls_need_net_admin(
    tmp_path: Path, caps: tuple[str, ...], may_write: bool
) -> None:
    """In a network namespace of our own: the host's sockets and sysctls are never touched."""
    require_tool("setpriv")
    script = tmp_path / "probe.py"
    script.write_text(_IN_PRIVATE_NETNS)
    shell = f'ip link set lo up && exec {sys.executable} {script} "$@"'
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", shell, "sh", *_setpriv(caps)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    as_root, as_user, write_status, other_sysctl_writable = (int(x) for x in done.stdout.split())
    assert as_user == as_root == 2  # both ends of the connection, tcp_info included, for anyone
    assert (write_status == 0) is may_write
    assert other_sysctl_writable != 0  # `test -w` fails: vm.* stays root's alone
