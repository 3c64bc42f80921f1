"""NamespaceSet against `ss` run inside each namespace, on real namespaces and processes.

Three "containers" (processes in namespaces of their own, two with identical loopback 4-tuples), a process
that exits before its namespace is entered, namespace churn, the fallback without CAP_SYS_ADMIN, and the
per-namespace keepalive sysctls. Other tests on this machine may create namespaces meanwhile: every check
looks only at namespaces made here, and fd counts are checked against the sockets the set says it holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest

from tcpwatchd.sources.netns import NetnsId
from tcpwatchd.sources.nsdiag import NamespaceSet, WatchedNamespace
from tcpwatchd.sources.nsenter import NamespaceGone, NamespaceWorker, Visit
from tcpwatchd.sysctl.procsys import read_sysctl
from tests.support.env import require_netns
from tests.support.netns import REPO, NetNS, fd_count, stop, unshared_sleepers, wait_line, wait_until

pytestmark = pytest.mark.integration

CONTAINER = str(REPO / "tests" / "support" / "netns_container.py")
READER = str(REPO / "tests" / "support" / "netns_reader.py")
SS_STATES = {
    "ESTAB": "ESTABLISHED",
    "FIN-WAIT-2": "FIN_WAIT2",
    "CLOSE-WAIT": "CLOSE_WAIT",
    "LISTEN": "LISTEN",
}
KEEPALIVE = ("net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes")


def ino(ns: NetNS) -> int:
    return os.stat(f"/run/netns/{ns.name}").st_ino


def ss_states(ns: NetNS) -> Counter[str]:
    rows = ns.run("ss", "-tanH").stdout.splitlines()
    return Counter(SS_STATES.get(row.split()[0], row.split()[0]) for row in rows if row.strip())


def find(watched: list[WatchedNamespace], ns: NetNS) -> WatchedNamespace:
    wanted = ino(ns)
    return next(w for w in watched if w.key.ino == wanted)


@pytest.fixture(scope="module")
def pods() -> Iterator[list[NetNS]]:
    require_netns()  # module fixtures are set up before the autouse check in conftest
    spaces = [NetNS("tcpwn") for _ in range(3)]
    try:
        for i, ns in enumerate(spaces):
            ns.__enter__()
            wait_line(ns.python(CONTAINER, *(["close_wait"] if i == 2 else [])), "READY")
        yield spaces
    finally:
        for ns in spaces:
            ns.close()


@pytest.fixture
def namespaces() -> Iterator[NamespaceSet]:
    nset = NamespaceSet()
    try:
        yield nset
    finally:
        nset.close()


def test_each_namespace_agrees_with_ss_inside_it(pods: list[NetNS], namespaces: NamespaceSet) -> None:
    watched = namespaces.refresh()
    assert sum(w.own for w in watched) == 1
    tuples = []
    for ns in pods:
        w = find(watched, ns)
        result = namespaces.dump(w)
        assert (w.mode, result.source, result.skipped_lines) == ("sockdiag", "sockdiag", 0)
        assert Counter(s.state.name for s in result.sockets) == ss_states(ns), ns.name
        tuples.append({(s.local, s.remote) for s in result.sockets})
    assert tuples[0] == tuples[1] and ("127.0.0.1:47001", "127.0.0.1:47000") in tuples[0]
    assert ss_states(pods[2])["CLOSE_WAIT"] == 1
    # Kernel counters are the namespace's own: one connect() in each, two in the third.
    opens = [namespaces.read_kstats(find(watched, ns))["Tcp.ActiveOpens"] for ns in pods]
    assert opens == [1, 1, 2]


def test_sockets_are_opened_once_and_kept(pods: list[NetNS], namespaces: NamespaceSet) -> None:
    first = [find(namespaces.refresh(), ns) for ns in pods]
    held, fds = namespaces.open_sockets, fd_count()
    for _ in range(3):
        watched = namespaces.refresh()
        assert [find(watched, ns) for ns in pods] == first  # same generation, same pids, same mode
        for ns in pods:
            namespaces.dump(find(watched, ns))
    assert fd_count() - namespaces.open_sockets == fds - held


def test_keepalive_sysctls_are_read_per_namespace(pods: list[NetNS], namespaces: NamespaceSet) -> None:
    pods[0].run("sysctl", "-qw", "net.ipv4.tcp_keepalive_time=7100")
    watched = namespaces.refresh()
    own = next(w for w in watched if w.own)
    readings = namespaces.read_sysctls([find(watched, pods[0]), find(watched, pods[1]), own], KEEPALIVE)
    values = [{r.name: r.value for r in per_ns} for per_ns in readings]
    assert values[0]["net.ipv4.tcp_keepalive_time"] == 7100
    assert values[1] == {KEEPALIVE[0]: 7200, KEEPALIVE[1]: 75, KEEPALIVE[2]: 9}  # a new namespace's defaults
    assert values[2] == {name: read_sysctl(name) for name in KEEPALIVE}


def test_a_process_gone_before_setns_is_a_race_not_an_error() -> None:
    require_netns()
    child = subprocess.Popen(["unshare", "-n", "sleep", "60"], start_new_session=True, text=True)
    worker = NamespaceWorker()
    try:
        path = f"/proc/{child.pid}/ns/net"
        wait_until(lambda: os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino, what="unshare")
        st = os.stat(path)
        wanted = NetnsId(st.st_dev, st.st_ino)
        stop(child)
        fds = fd_count()
        # The pid is gone; our own pid is in another namespace: neither is entered.
        results = worker.run([Visit((child.pid, os.getpid()), wanted, lambda: "inside")])
        assert isinstance(results[0], NamespaceGone)
        assert fd_count() == fds + 1  # the thread's fd to its own namespace, opened once
    finally:
        stop(child)
        worker.stop()


def test_a_namespace_whose_processes_exit_is_dropped_and_its_sockets_closed(namespaces: NamespaceSet) -> None:
    require_netns()
    with NetNS("tcpwx") as ns:
        wait_line(ns.python(CONTAINER), "READY")
        watched = namespaces.refresh()
        w = find(watched, ns)
        held = namespaces.open_sockets
        ns.close()  # the process is killed: the namespace has nobody left in it
        assert namespaces.dump(w).source == "sockdiag"  # our sockets still answer (they pin it)
        namespaces.refresh()
        assert w.key not in {x.key for x in namespaces.refresh()}
        assert namespaces.open_sockets <= held - 2
        with pytest.raises(NamespaceGone):
            namespaces.dump(w)


def test_namespace_churn_leaves_no_fd_behind(namespaces: NamespaceSet) -> None:
    require_netns()
    namespaces.refresh()
    baseline = fd_count() - namespaces.open_sockets
    alive: list[subprocess.Popen[str]] = []
    made: set[int] = set()
    try:
        for _ in range(10):
            for child in alive:
                stop(child)
            alive = unshared_sleepers(20)
            made.update(os.stat(f"/proc/{child.pid}/ns/net").st_ino for child in alive)
            watched = namespaces.refresh()
            ours = [w for w in watched if w.key.ino in made]
            assert len(ours) >= 20 and all(w.mode == "sockdiag" for w in ours)
            assert fd_count() - namespaces.open_sockets == baseline
    finally:
        for child in alive:
            stop(child)
    namespaces.refresh()
    assert not made & {w.key.ino for w in namespaces.refresh()}
    assert fd_count() - namespaces.open_sockets == baseline


def test_without_cap_sys_admin_it_reads_proc_net_and_says_degraded(pods: list[NetNS]) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin", sys.executable, READER]
    out = subprocess.run([*argv, str(ino(pods[2]))], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["mode"], report["source"]) == ("procnet", "procnet")
    assert "Operation not permitted" in report["notes"][0]
    assert Counter(report["states"]) == ss_states(pods[2])
