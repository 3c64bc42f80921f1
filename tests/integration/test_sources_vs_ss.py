"""Both socket sources against `ss -tan`, on a known population in a private network namespace.

Netlink and /proc/net both show the namespace of the reader: sock_diag runs in a child inside the
namespace (printing JSON); /proc/net/tcp is read from the host through /proc/<pid of the population>.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tcpwatchd.model import Family, Socket, TcpInfo, TcpState, TimerKind
from tcpwatchd.sources import ProcNetSource, SourceResult, read_kernel_counters
from tests.support.env import require_netns
from tests.support.netns import NetNS, wait_line
from tests.support.population_sources import EXPECTED, KEEPALIVE_OFF, KEEPALIVE_ON

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
POPULATION = REPO / "tests" / "support" / "population_sources.py"
SS_STATES = {
    "ESTAB": "ESTABLISHED",
    "SYN-SENT": "SYN_SENT",
    "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1",
    "FIN-WAIT-2": "FIN_WAIT2",
    "TIME-WAIT": "TIME_WAIT",
    "UNCONN": "CLOSE",
    "CLOSE-WAIT": "CLOSE_WAIT",
    "LAST-ACK": "LAST_ACK",
    "LISTEN": "LISTEN",
    "CLOSING": "CLOSING",
}
DUMP_IN_NAMESPACE = f"""
import dataclasses, json, sys
sys.path.insert(0, {str(REPO)!r})
from tcpwatchd.config import DaemonConfig
from tcpwatchd.sources import SOCKET_SOURCES, SourceResult
from tcpwatchd.sources.taker import SnapshotTaker
if sys.argv[1] == "auto":  # a mode of the snapshot taker, which falls back per poll
    snap = SnapshotTaker(DaemonConfig(source="auto")).take()
    result = SourceResult(snap.source, snap.sockets)
else:
    result = SOCKET_SOURCES[sys.argv[1]]().sockets()
print(json.dumps({{"source": result.source, "skipped": result.skipped_lines, "notes": result.notes,
                  "sockets": [dataclasses.asdict(s) for s in result.sockets]}}))
"""

Summary = Counter[tuple[str, str, str, int]]


class World:
    def __init__(self, ns: NetNS, pid: int) -> None:
        self.ns = ns
        self.pid = pid

    def source_in_namespace(self, name: str) -> SourceResult:
        out = json.loads(self.ns.run(sys.executable, "-c", DUMP_IN_NAMESPACE, name).stdout)
        sockets = tuple(_socket(d) for d in out["sockets"])
        return SourceResult(out["source"], sockets, out["skipped"], tuple(out["notes"]))

    def ss_info(self) -> dict[tuple[str, str], dict[str, int]]:
        """`ss -tinH` of ESTABLISHED sockets: (local, remote) -> the bytes_* counters it prints."""
        out: dict[tuple[str, str], dict[str, int]] = {}
        key: tuple[str, str] | None = None
        for line in self.ns.run("ss", "-tinH", "state", "established").stdout.splitlines():
            if not line.startswith((" ", "\t")):
                local, remote = line.split()[2:4]
                key = (_ss_endpoint(local), _ss_endpoint(remote))
            elif key is not None:
                out[key] = {
                    name: int(value)
                    for name, _, value in (f.partition(":") for f in line.split())
                    if name in ("bytes_acked", "bytes_received")
                }
        return out

    def ss(self) -> Summary:
        return Counter(
            _ss_row(line) for line in self.ns.run("ss", "-tanH").stdout.splitlines() if line.strip()
        )


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_netns()  # module fixtures are set up before the autouse check in conftest
    with NetNS() as ns:
        population = ns.python(str(POPULATION))
        wait_line(population, "READY")
        yield World(ns, population.pid)


def summary(sockets: tuple[Socket, ...]) -> Summary:
    return Counter((s.state.name, s.local, s.remote, s.rqueue) for s in sockets)


def by_endpoints(sockets: tuple[Socket, ...]) -> dict[tuple[str, str], Socket]:
    return {(s.local, s.remote): s for s in sockets}


def test_ss_sees_the_population(world: World) -> None:
    assert world.ss() == Counter(EXPECTED)


def test_sockdiag_agrees_with_ss(world: World) -> None:
    result = world.source_in_namespace("sockdiag")
    assert (result.source, result.skipped_lines, result.notes) == ("sockdiag", 0, ())
    assert summary(result.sockets) == world.ss()


def test_procnet_agrees_with_ss(world: World) -> None:
    result = ProcNetSource(proc_root=f"/proc/{world.pid}").sockets()
    assert (result.source, result.skipped_lines) == ("procnet", 0)
    assert summary(result.sockets) == world.ss()


def test_auto_uses_netlink_when_it_can(world: World) -> None:
    result = world.source_in_namespace("auto")
    assert result.source == "sockdiag" and summary(result.sockets) == Counter(EXPECTED)


def test_the_sources_agree_on_inodes_and_timer_kinds(world: World) -> None:
    netlink = by_endpoints(world.source_in_namespace("sockdiag").sockets)
    proc = by_endpoints(ProcNetSource(proc_root=f"/proc/{world.pid}").sockets().sockets)
    assert netlink.keys() == proc.keys()
    for key, sock in netlink.items():
        assert (sock.inode, sock.timer, sock.family) == (
            proc[key].inode,
            proc[key].timer,
            proc[key].family,
        ), key


def test_established_sockets_carry_tcp_info(world: World) -> None:
    sockets = world.source_in_namespace("sockdiag").sockets
    established = [s for s in sockets if s.state is TcpState.ESTABLISHED]
    assert len(established) == sum(1 for row in EXPECTED if row[0] == "ESTABLISHED")
    assert all(s.tcp_info is not None and s.cookie for s in established)
    assert all(s.tcp_info is None for s in sockets if s.state in (TcpState.TIME_WAIT, TcpState.SYN_RECV))


def test_tcp_info_byte_counts_and_probes_agree_with_ss(world: World) -> None:
    """tcpi_bytes_acked / tcpi_bytes_received (offsets 120 and 128 of struct tcp_info) against `ss -ti`,
    which prints each only when it is not 0."""
    sockets = by_endpoints(world.source_in_namespace("sockdiag").sockets)
    counted = 0
    for (local, remote), fields in world.ss_info().items():
        info = sockets[(local, remote)].tcp_info
        assert info is not None
        assert (info.bytes_acked, info.bytes_received) == (
            fields.get("bytes_acked", 0),
            fields.get("bytes_received", 0),
        ), (local, remote)
        assert info.probes == 0
        counted += 1
    assert counted >= sum(1 for row in EXPECTED if row[0] == "ESTABLISHED")
    # Known from the population: 1000 bytes sent (+1 for the SYN, sequence space) and received.
    sender, receiver = (sockets[pair].tcp_info for pair in (("127.0.0.1:6002", "127.0.0.1:5001"),
                                                           ("127.0.0.1:5001", "127.0.0.1:6002")))  # fmt: skip
    assert sender is not None and receiver is not None
    assert (sender.bytes_acked, receiver.bytes_received) == (1001, 1000)


@pytest.mark.parametrize("source", ["sockdiag", "procnet"])
def test_keepalive_timer_on_and_off(world: World, source: str) -> None:
    if source == "procnet":
        sockets = ProcNetSource(proc_root=f"/proc/{world.pid}").sockets().sockets
    else:
        sockets = world.source_in_namespace(source).sockets
    found = by_endpoints(sockets)
    assert found[KEEPALIVE_ON].timer is TimerKind.KEEPALIVE
    assert 500_000 < found[KEEPALIVE_ON].timer_expires_ms <= 600_000  # TCP_KEEPIDLE 600 s
    assert found[KEEPALIVE_OFF].timer is TimerKind.OFF


def test_kernel_counters_of_the_namespace(world: World) -> None:
    counters = read_kernel_counters(f"/proc/{world.pid}")
    assert counters["TcpExt.ListenOverflows"] >= 1  # the SYN dropped by the full listener
    assert counters["Tcp.CurrEstab"] >= sum(1 for row in EXPECTED if row[0] in ("ESTABLISHED", "CLOSE_WAIT"))


def _socket(d: dict[str, Any]) -> Socket:
    info = TcpInfo(**d["tcp_info"]) if d["tcp_info"] else None
    enums = {"family": Family(d["family"]), "state": TcpState(d["state"]), "timer": TimerKind(d["timer"])}
    return Socket(**{**d, **enums, "tcp_info": info})


def _ss_row(line: str) -> tuple[str, str, str, int]:
    """'ESTAB 7 0 [::1]:6010 [::1]:5004' → ('ESTABLISHED', '[::1]:6010', '[::1]:5004', 7)."""
    state, rqueue, _wqueue, local, remote = line.split()[:5]
    return SS_STATES[state], _ss_endpoint(local), _ss_endpoint(remote), int(rqueue)


def _ss_endpoint(text: str) -> str:
    """ss prints '*' for a dual-stack IPv6 wildcard and for port 0; Socket.local spells '[::]:0'."""
    host, _, port = text.rpartition(":")
    return f"{'[::]' if host == '*' else host}:{'0' if port == '*' else port}"
