"""Other network namespaces in the pure stages: tagged parts, pod labels of unowned sockets, listeners,
finding identities, the enforce selectors, owner workloads and the namespace metrics."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from tcpwatchd.actions.netns_sysctl import selected
from tcpwatchd.columns import object_key
from tcpwatchd.config import ConfigError, parse_config
from tcpwatchd.detectors.base import Kind, connection_finding
from tcpwatchd.model import NOBODY, NamespaceStats, ProcessLabels, TcpState, WatchedNetns, Workload
from tcpwatchd.outputs.netns_metrics import aborts_metric, namespace_metrics
from tcpwatchd.snapshot import Snapshot, count_by_state_and_process, listener_owners, row_labels
from tcpwatchd.sources.foreign import tagged_parts
from tcpwatchd.sources.nsstat import abort_counters, tcp_families
from tcpwatchd.sources.workloads import Workloads
from tcpwatchd.table import SocketTable
from tcpwatchd.tracker import Tracker
from tests.support.builders import owner, snapshot, sock

WEB = WatchedNetns(7, "net:[4026532281]", "sockdiag", "shop", "web-1")
PLAIN = WatchedNetns(9, "net:[4026532290]", "procnet", error="setns: EPERM")


def pod_snapshot() -> Snapshot:
    """Two namespaces with the same loopback 4-tuples: ours (0) and web-1's (7); one orphan in web-1."""
    ours = [sock(TcpState.LISTEN, ("127.0.0.1", 80), ("0.0.0.0", 0), inode=1)]
    theirs = [
        sock(TcpState.LISTEN, ("127.0.0.1", 80), ("0.0.0.0", 0), inode=2),
        sock(TcpState.FIN_WAIT2, ("127.0.0.1", 80), ("127.0.0.1", 40000), inode=0),
    ]
    table = SocketTable((*SocketTable.of(ours).parts, *tagged_parts(theirs, WEB.netns)))
    base = snapshot(0.0, [], {1: owner("host-nginx", 10), 2: owner("nginx", 20)})
    return replace(base, sockets=table, namespaces=(WEB, PLAIN))


def test_tagged_parts_carry_the_namespace_in_the_column_the_socket_and_the_identity() -> None:
    s = sock(inode=5)
    (part,) = tagged_parts([s], 7)
    assert part.column("netns") == [7]
    assert part.socket(0).netns == 7
    assert part.column("key") == [object_key(replace(s, netns=7))] != [object_key(s)]


def test_a_sockdiag_table_is_wrapped_part_by_part() -> None:
    table = SocketTable.of([sock(inode=1), sock(inode=2)])
    parts = tagged_parts(table, 3)
    assert [p.column("netns") for p in parts] == [[3, 3]]
    assert parts[0].column("inode") == [1, 2]


def test_unowned_sockets_in_a_pod_s_namespace_count_under_the_pod() -> None:
    snap = pod_snapshot()
    labels = row_labels(snap)
    assert labels[0] == ProcessLabels("host-nginx")
    assert labels[2] == ProcessLabels("", "shop", "web-1", "")
    counts = count_by_state_and_process(snap)
    assert counts[("fin_wait2", ProcessLabels("", "shop", "web-1", ""))] == 1
    assert ("fin_wait2", NOBODY) not in counts


def test_listeners_are_per_namespace() -> None:
    listeners = listener_owners(pod_snapshot())
    assert listeners[(0, 80)].name == "host-nginx"
    assert listeners[(7, 80)].name == "nginx"


def test_findings_of_two_namespaces_never_share_an_identity_and_say_the_pod() -> None:
    snap = pod_snapshot()
    tracked = Tracker().update(snap)
    table = snap.sockets
    orphan = table.socket(2)
    twin = replace(orphan, netns=0)
    found = connection_finding(Kind("close_wait"), tracked, orphan, 1.0)
    assert (found.namespace, found.pod, found.process, found.netns) == ("shop", "web-1", "", 7)
    assert "pod='shop/web-1'" in found.describe()
    other = connection_finding(Kind("close_wait"), tracked, twin, 1.0)
    assert other.identity != found.identity and other.pod == ""


def test_a_namespace_that_is_no_pod_s_is_named_by_its_id_in_the_log() -> None:
    snap = replace(pod_snapshot(), namespaces=(PLAIN,))
    orphan = replace(snap.sockets.socket(2), netns=PLAIN.netns)
    found = connection_finding(Kind("close_wait"), Tracker().update(snap), orphan, 1.0)
    assert found.pod == "" and "netns=9" in found.describe()


@pytest.mark.parametrize(
    ("selectors", "ns", "chosen"),
    [
        (["pod:kube-system/*"], WatchedNetns(1, "l", "sockdiag", "kube-system", "coredns-1"), True),
        (["pod:kube-system/*"], WEB, False),
        (["pod:shop/web-?"], WEB, True),
        (["pod:*/*"], PLAIN, False),  # no pod: only "*" selects it
        (["*"], PLAIN, True),
        ([], WEB, False),
    ],
)
def test_enforce_selectors(selectors: list[str], ns: WatchedNetns, chosen: bool) -> None:
    assert selected(selectors, ns) is chosen


@pytest.mark.parametrize("bad", ["pod:shop", "shop/web", "pod:Shop/web", "pod:a/b\n", "pod:a/b c", "**x"])
def test_bad_selectors_are_refused_by_the_config(bad: str) -> None:
    with pytest.raises(ConfigError, match="enforce_namespaces"):
        parse_config(f"[sysctl]\nenforce_namespaces = {json.dumps([bad])}\n")


def test_namespaces_config_defaults_and_choices() -> None:
    cfg = parse_config("")
    assert (cfg.namespaces.watch, cfg.namespaces.host_root, cfg.namespaces.labels) == ("all", "/", True)
    with pytest.raises(ConfigError, match=r"namespaces\.watch"):
        parse_config('[namespaces]\nwatch = "some"\n')


def _node(tmp_path: Path) -> tuple[str, str]:
    """A proc tree with a host process (1) and a containerd container process (2), and a node naming it."""
    cid, uid = "ab" * 32, "0a1b2c3d-0000-4000-8000-00000000000a"
    proc = tmp_path / "proc"
    for pid, cgroup in (
        (1, "0::/system.slice/sshd.service\n"),
        (2, f"0::/kubepods.slice/kubepods-pod{uid.replace('-', '_')}.slice/cri-containerd-{cid}.scope\n"),
    ):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cgroup").write_text(cgroup)
    logs = tmp_path / "host/var/log/containers"
    logs.mkdir(parents=True)
    os.symlink("/nowhere", logs / f"web-1_shop_nginx-{cid}.log")
    (tmp_path / "host/var/log/pods" / f"shop_web-1_{uid}").mkdir(parents=True)
    return str(proc), str(tmp_path / "host")


def test_owners_get_their_workload_and_host_processes_stay_as_they_are(tmp_path: Path) -> None:
    proc, host = _node(tmp_path)
    names = Workloads(proc, host)
    names.refresh()
    host_only = {10: owner("sshd", 1)}
    assert names.label(host_only) is host_only  # nothing to rename: the same mapping, no copy
    nginx = owner("nginx", 2)
    labelled = names.label({10: owner("sshd", 1), 11: nginx, 12: nginx})
    assert labelled[11].workload == Workload("shop", "web-1", "nginx")
    assert labelled[11].container == "ab" * 6
    assert labelled[11] is labelled[12]  # one Owner per process, shared by its sockets
    assert labelled[10].workload == Workload()
    assert names.pod_named("0a1b2c3d-0000-4000-8000-00000000000a") == Workload("shop", "web-1")
    assert names.pod_named("") == Workload() and names.unresolved == 0


def test_an_unreadable_host_root_names_nothing_and_counts_it(tmp_path: Path) -> None:
    proc, _ = _node(tmp_path)
    names = Workloads(proc, str(tmp_path / "missing"))
    names.refresh()
    labelled = names.label({11: owner("nginx", 2)})
    assert labelled[11].workload == Workload() and names.unresolved == 1


class _Collect(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:  # type: ignore[override]
        return self.metrics


def test_namespace_metrics() -> None:
    snap = replace(
        pod_snapshot(),
        kernel_counters=MappingProxyType({"TcpExt.TCPAbortOnClose": 3}),
        namespaces=(replace(WEB, kernel_counters=MappingProxyType({"TcpExt.TCPAbortOnClose": 5})), PLAIN),
        namespace_stats=NamespaceStats(denied=1, unresolved=2),
    )
    registry = CollectorRegistry()
    registry.register(_Collect([aborts_metric(snap), *namespace_metrics(snap)]))
    get = registry.get_sample_value
    own = {"reason": "on_close", "namespace": "", "pod": "", "netns": ""}
    assert get("tcpwatchd_kernel_tcp_aborts_total", own) == 3
    web = {"reason": "on_close", "namespace": "shop", "pod": "web-1", "netns": "net:[4026532281]"}
    assert get("tcpwatchd_kernel_tcp_aborts_total", web) == 5
    assert get("tcpwatchd_network_namespaces", {"mode": "sockdiag"}) == 2  # ours and web-1's
    assert get("tcpwatchd_network_namespaces", {"mode": "procnet"}) == 1
    assert get("tcpwatchd_network_namespaces_denied") == 1
    assert get("tcpwatchd_workload_names_unresolved") == 2


SOCKSTAT = "sockets: used 13\nTCP: inuse {v4} orphan 28 tw {tw} alloc 10 mem 7\nUDP: inuse 0 mem 0\n"


@pytest.mark.parametrize(
    ("v4", "v6", "tw", "families"),
    [
        (3, 0, 0, (socket.AF_INET,)),
        (0, 2, 0, (socket.AF_INET6,)),
        (0, 0, 0, ()),  # an empty namespace costs no walk of the host's hash
        (0, 0, 1, (socket.AF_INET, socket.AF_INET6)),  # TIME_WAIT of either family
    ],
)
def test_only_the_families_a_namespace_uses_are_dumped(
    v4: int, v6: int, tw: int, families: tuple[int, ...]
) -> None:
    assert tcp_families(SOCKSTAT.format(v4=v4, tw=tw), f"TCP6: inuse {v6}\nUDP6: inuse 0\n") == families


def test_unreadable_sockstat_dumps_both() -> None:
    assert tcp_families("", "") == (socket.AF_INET, socket.AF_INET6)


def test_abort_counters_keep_only_tcpabort() -> None:
    netstat = (
        "TcpExt: SyncookiesSent TCPAbortOnClose TCPAbortOnData\nTcpExt: 0 3 -1\nIpExt: InNoRoutes\nIpExt: 0\n"
    )
    assert abort_counters(netstat) == {"TcpExt.TCPAbortOnClose": 3, "TcpExt.TCPAbortOnData": -1}
    assert abort_counters("TcpExt: TCPAbortOnClose\n") == {}  # cut short: nothing rather than wrong
