"""Prometheus metric families from a `SysctlReport`: no I/O, the daemon's collector calls it at scrape time.

Label `name` is the dotted sysctl name from the static catalog, never text from the config or /proc.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tcpwatchd.sysctl.audit import SysctlReport

VALUE = "tcpwatchd_sysctl_value"
DESIRED = "tcpwatchd_sysctl_desired_value"
COMPLIANT = "tcpwatchd_sysctl_compliant"
WRITES = "tcpwatchd_sysctl_writes"  # exposed with the _total suffix
WRITE_ERRORS = "tcpwatchd_sysctl_write_errors"  # exposed with the _total suffix
IDLE = "tcpwatchd_dead_peer_idle_detection_seconds"
INFLIGHT = "tcpwatchd_dead_peer_inflight_detection_seconds"


def _values(report: SysctlReport) -> list[Metric]:
    value = GaugeMetricFamily(
        VALUE,
        "Current value of the sysctl in tcpwatchd's network namespace, as read from /proc/sys.",
        labels=["name"],
    )
    desired = GaugeMetricFamily(DESIRED, "Value the config wants for the sysctl.", labels=["name"])
    compliant = GaugeMetricFamily(
        COMPLIANT,
        "Whether the sysctl holds its desired value: 1 when it does, 0 when it differs or cannot be read.",
        labels=["name"],
    )
    for e in report.entries:
        if e.current is not None:
            value.add_metric([e.name], e.current)
        if e.desired is not None:
            desired.add_metric([e.name], e.desired)
            compliant.add_metric([e.name], 1.0 if e.compliant else 0.0)
    return [value, desired, compliant]


def _writes(report: SysctlReport) -> list[Metric]:
    writes = CounterMetricFamily(
        WRITES, "Sysctl values tcpwatchd wrote to enforce the config since it started.", labels=["name"]
    )
    errors = CounterMetricFamily(
        WRITE_ERRORS,
        "Sysctl writes tcpwatchd attempted that the kernel refused, since it started.",
        labels=["name"],
    )
    for t in report.write_totals:
        writes.add_metric([t.name], t.succeeded)
        errors.add_metric([t.name], t.failed)
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


def sysctl_metrics(report: SysctlReport) -> list[Metric]:
    """Every sysctl metric family for one report (see docs/sysctl.md for the exact names)."""
    return _values(report) + _writes(report) + _derived(report)
