"""Metrics of how connections are counted (destroy events or polling) and the kernel's listen counters.

Rendered from the snapshot of the last poll (no I/O in a scrape).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tcpwatchd.facts import DESTROY_EVENTS, POLLING
from tcpwatchd.snapshot import Snapshot

# TcpExt counters (include/uapi/linux/snmp.h; /proc/net/netstat) -> metric, help.
LISTEN_COUNTERS = (
    (
        "TcpExt.ListenOverflows",
        "tcpwatchd_kernel_listen_overflows",
        "Connections dropped because a listener's accept queue was full (TcpExt ListenOverflows).",
    ),
    (
        "TcpExt.ListenDrops",
        "tcpwatchd_kernel_listen_drops",
        "SYNs and handshakes dropped at a listener for any reason, overflows included (TcpExt ListenDrops).",
    ),
    (
        "TcpExt.SyncookiesSent",
        "tcpwatchd_kernel_syncookies_sent",
        "SYN cookies sent because a SYN queue was full (TcpExt SyncookiesSent).",
    ),
    (
        "TcpExt.SyncookiesFailed",
        "tcpwatchd_kernel_syncookies_failed",
        "ACKs whose SYN cookie did not validate (TcpExt SyncookiesFailed).",
    ),
)


def connection_event_metrics(snap: Snapshot) -> Iterator[Metric]:
    events = snap.connection_events
    mode = GaugeMetricFamily(
        "tcpwatchd_connection_events_source",
        "1 for how ended connections are learnt: destroy_events (sock_diag multicast: connections shorter "
        "than a poll are counted) or polling (they are not).",
        labels=["mode"],
    )
    for name in (DESTROY_EVENTS, POLLING):
        mode.add_metric([name], 1.0 if events.mode == name else 0.0)
    yield mode
    for name, value, help in (
        ("events", events.events_total, "Destroy events read since tcpwatchd started."),
        (
            "lost",
            events.lost_total,
            "Destroy events the kernel dropped because tcpwatchd's receive buffer was full (give "
            "CAP_NET_ADMIN for a larger one, or poll more often).",
        ),
        ("overruns", events.overruns_total, "ENOBUFS reports on the destroy-event socket."),
        (
            "overflow",
            events.overflow_total,
            "Destroy events beyond the per-poll key cap (counted, not keyed).",
        ),
    ):
        yield CounterMetricFamily(f"tcpwatchd_connection_events_{name}", help, value=float(value))


def listen_counter_metrics(snap: Snapshot) -> Iterator[Metric]:
    for key, name, help in LISTEN_COUNTERS:
        value = snap.kernel_counters.get(key)
        if value is not None:
            yield CounterMetricFamily(name, help, value=float(value))
