"""Prometheus metric families from a `SysctlReport`: no I/O, the daemon's collector calls it at scrape time.

Label `name` is the dotted sysctl name from the static catalog, never text from the config or /proc.
`namespace`, `pod` and `netns` say which network namespace the value is of: all "" for tcpwatchd's own, the
pod's names and "net:[<inode>]" for another (see outputs/netns_metrics.py for why `netns` is there too).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tcpwatchd.actions.netns_sysctl import NamespaceSysctl
from tcpwatchd.sysctl.audit import SysctlReport

WHERE = ["namespace", "pod", "netns"]
OWN = ("", "", "")
Located = tuple[tuple[str, str, str], SysctlReport]

VALUE = "tcpwatchd_sysctl_value"
DESIRED = "tcpwatchd_sysctl_desired_value"
COMPLIANT = "tcpwatchd_sysctl_compliant"
WRITES = "tcpwatchd_sysctl_writes"  # exposed with the _total suffix
WRITE_ERRORS = "tcpwatchd_sysctl_write_errors"  # exposed with the _total suffix
IDLE = "tcpwatchd_dead_peer_idle_detection_seconds"
INFLIGHT = "tcpwatchd_dead_peer_inflight_detection_seconds"


def _values(located: Sequence[Located]) -> list[Metric]:
    value = GaugeMetricFamily(
        VALUE,
        "Current value of the sysctl in the network namespace (tcpwatchd's own when namespace, pod and "
        "netns are empty), as read from /proc/sys.",
        labels=["name", *WHERE],
    )
    desired = GaugeMetricFamily(DESIRED, "Value the config wants for the sysctl.", labels=["name", *WHERE])
    compliant = GaugeMetricFamily(
        COMPLIANT,
        "Whether the sysctl holds its desired value: 1 when it does, 0 when it differs or cannot be read.",
        labels=["name", *WHERE],
    )
    for where, report in located:
        for e in report.entries:
            if e.current is not None:
                value.add_metric([e.name, *where], e.current)
            if e.desired is not None:
                desired.add_metric([e.name, *where], e.desired)
                compliant.add_metric([e.name, *where], 1.0 if e.compliant else 0.0)
    return [value, desired, compliant]


def _writes(located: Sequence[Located]) -> list[Metric]:
    writes = CounterMetricFamily(
        WRITES,
        "Sysctl values tcpwatchd wrote to enforce the config since it started.",
        labels=["name", *WHERE],
    )
    errors = CounterMetricFamily(
        WRITE_ERRORS,
        "Sysctl writes tcpwatchd attempted that the kernel refused, since it started.",
        labels=["name", *WHERE],
    )
    for where, report in located:
        for t in report.write_totals:
            writes.add_metric([t.name, *where], t.succeeded)
            errors.add_metric([t.name, *where], t.failed)
    return [writes, errors]


def _derived(report: SysctlReport) -> list[Metric]:
    out: list[Metric] = []
    if report.idle_detection_seconds is not None:
        out.append(
            GaugeMetricFamily(
                IDLE,
                "Worst-case seconds before the kernel aborts an idle connection to a dead peer, with"
                " SO_KEEPALIVE on and no per-socket override:"
                " tcp_keepalive_time + tcp_keepalive_intvl * tcp_keepalive_probes.",
                value=report.idle_detection_seconds,
            )
        )
    if report.inflight_detection_seconds is not None:
        out.append(
            GaugeMetricFamily(
                INFLIGHT,
                "Seconds of unacknowledged retransmission before the kernel aborts a connection to a dead"
                " peer, from tcp_retries2 as net/ipv4/tcp_timer.c tcp_model_timeout() computes it.",
                value=report.inflight_detection_seconds,
            )
        )
    return out


def sysctl_metrics(report: SysctlReport, namespaces: Sequence[NamespaceSysctl] = ()) -> list[Metric]:
    """Every sysctl metric family for the own namespace's report and the other namespaces' (see
    docs/sysctl.md for the exact names)."""
    located: list[Located] = [(OWN, report)]
    located += [((n.namespace, n.pod, n.label), n.report) for n in namespaces]
    return _values(located) + _writes(located) + _derived(report)
