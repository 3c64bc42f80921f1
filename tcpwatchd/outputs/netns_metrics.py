"""Metric families about the network namespaces a poll watched: how many and how (sockdiag, or /proc when
degraded), what could not be read or named, and each namespace's kernel abort counters. No I/O.

Per-namespace series carry `namespace` and `pod` (the pod's Kubernetes names; "" for tcpwatchd's own
namespace and for a namespace that is no pod's) and `netns` ("" for the own one, else "net:[<inode>]"):
two namespaces can share the same names (a pod's old and new sandbox during a restart, two plain
containers), and two series with one label set would make the exposition invalid. A namespace's series
go when it goes, so their number stays that of the live namespaces.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tcpwatchd.snapshot import Snapshot

NAMESPACE_LABELS = ("namespace", "pod", "netns")

# TcpExt counters (include/uapi/linux/snmp.h, LINUX_MIB_TCPABORTON*) -> `reason` label.
ABORT_REASONS: dict[str, str] = {
    "TcpExt.TCPAbortOnClose": "on_close",
    "TcpExt.TCPAbortOnData": "on_data",
    "TcpExt.TCPAbortOnTimeout": "on_timeout",
    "TcpExt.TCPAbortOnLinger": "on_linger",
    "TcpExt.TCPAbortOnMemory": "on_memory",
    "TcpExt.TCPAbortFailed": "failed",
}

_STATS = (
    (
        "failed",
        "tcpwatchd_network_namespaces_failed",
        "Namespaces whose sockets could not be read in the last poll.",
    ),
    (
        "denied",
        "tcpwatchd_network_namespaces_denied",
        "Namespaces tcpwatchd may not enter (no CAP_SYS_ADMIN), read from /proc/<pid>/net/tcp instead.",
    ),
    (
        "vanished",
        "tcpwatchd_network_namespaces_vanished",
        "Namespaces found by the last poll that were gone before they could be read (a normal race).",
    ),
    (
        "unresolved",
        "tcpwatchd_workload_names_unresolved",
        "Container owners and pod namespaces in the last poll whose names were not found under host_root.",
    ),
    (
        "names_skipped",
        "tcpwatchd_workload_names_skipped",
        "Entries of /var/log/containers, /var/log/pods or Docker's state not of the expected shape, skipped.",
    ),
    (
        "names_unreadable",
        "tcpwatchd_workload_names_unreadable",
        "Directories or files under host_root that exist but could not be read.",
    ),
)


def aborts_metric(snap: Snapshot) -> CounterMetricFamily:
    """The kernel's abort counters of every watched namespace (the own one with empty labels)."""
    m = CounterMetricFamily(
        "tcpwatchd_kernel_tcp_aborts",
        "Connections the kernel aborted with a RST, by reason (TcpExt TCPAbortOn*, TCPAbortFailed) and "
        "network namespace.",
        labels=["reason", *NAMESPACE_LABELS],
    )
    where = [(("", "", ""), snap.kernel_counters)]
    where += [((ns.namespace, ns.pod, ns.label), ns.kernel_counters) for ns in snap.namespaces]
    for labels, counters in where:
        for key, reason in ABORT_REASONS.items():
            if key in counters:
                m.add_metric([reason, *labels], float(counters[key]))
    return m


def namespace_metrics(snap: Snapshot) -> Iterator[Metric]:
    watched = GaugeMetricFamily(
        "tcpwatchd_network_namespaces",
        'Network namespaces watched in the last poll, by how: "sockdiag" (netlink from inside), or '
        '"procnet" (/proc/<pid>/net/tcp, degraded). tcpwatchd\'s own namespace counts under its source.',
        labels=["mode"],
    )
    modes = Counter(ns.mode for ns in snap.namespaces)
    modes[snap.source] += 1
    for mode in ("sockdiag", "procnet"):
        watched.add_metric([mode], float(modes[mode]))
    yield watched
    for field, name, help_text in _STATS:
        yield GaugeMetricFamily(name, help_text, value=float(getattr(snap.namespace_stats, field)))
