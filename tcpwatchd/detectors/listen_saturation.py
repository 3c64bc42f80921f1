"""Listener saturation: an accept queue filling up, the state in which no new client can connect.

For a LISTEN socket sock_diag reports the accept queue's length as idiag_rqueue (sk_ack_backlog) and its
limit as idiag_wqueue (sk_max_ack_backlog, min(backlog, net.core.somaxconn)): `ss -lnt` shows them as
Recv-Q / Send-Q (net/ipv4/tcp_diag.c tcp_diag_get_info). When the queue is full the kernel drops the
final ACK of new handshakes and counts TcpExt ListenOverflows (and ListenDrops) in the namespace
(net/ipv4/tcp_ipv4.c tcp_v4_syn_recv_sock). A full queue means the application stopped calling
accept() or cannot keep up. A listener is saturated when its queue has stayed at least `min_fill` of its
limit in every poll for `for_seconds` (a burst that the application drains is not), or at once when its
queue is at its limit and ListenOverflows rose since the previous poll (clients are being dropped now; the
counter is per namespace, not per listener, so only listeners in tcpwatchd's own namespace, whose counters
it reads, are judged so). The tracker keeps since when each queue has been how full (readers.QueueFill).
/proc/net/tcp gives no limit for listeners: those are not judged.
"""

from __future__ import annotations

from types import MappingProxyType

from pydantic import Field

from tcpwatchd.detectors.base import (
    Context,
    Detail,
    Finding,
    Kind,
    Outcome,
    connection_finding,
    mass_outcome,
    owner_labels,
)
from tcpwatchd.detectors.registry import DetectorSpec, KindSpec, ValueGauge, register
from tcpwatchd.model import ProcessLabels, TcpState
from tcpwatchd.sections import DetectorSettings
from tcpwatchd.tracker import TrackedPoll

LISTEN_SATURATED = Kind("listen_saturated")
QUEUE_LENGTH, QUEUE_LIMIT = "listen_queue_length", "listen_queue_limit"


class ListenSaturationConfig(DetectorSettings):
    min_fill: float = Field(0.8, gt=0, le=1)  # queue / limit at which a listener counts as saturated
    for_seconds: float = Field(30.0, ge=0, le=86400)  # ... when it has stayed so full this long
    per_port_labels: bool = True  # label the queue gauges by port (listening ports are few)


def detect_listen_saturation(tracked: TrackedPoll, cfg: ListenSaturationConfig, ctx: Context) -> Outcome:
    table = tracked.snapshot.sockets
    rows = table.rows_in(TcpState.LISTEN)
    queues, limits, ports = table.column("rqueue"), table.column("wqueue"), table.column("local_port")
    lengths: dict[tuple[ProcessLabels, int], float] = {}
    caps: dict[tuple[ProcessLabels, int], float] = {}
    for row, labels in zip(rows, owner_labels(tracked, rows), strict=True):
        key = (labels, ports[row] if cfg.per_port_labels else -1)
        lengths[key] = max(lengths.get(key, 0.0), float(queues[row]))
        caps[key] = max(caps.get(key, 0.0), float(limits[row]))
    overflows = tracked.counter_deltas.get("TcpExt.ListenOverflows", 0)
    keys, spaces, now = table.column("key"), table.column("netns"), tracked.now
    held: dict[int, float] = {}  # row -> seconds its queue has stayed at min_fill
    for row in rows:
        fill = tracked.queue_fills.get(keys[row])
        since = fill.above_since(cfg.min_fill) if fill else None
        if since is None:
            continue
        dropping = overflows > 0 and spaces[row] == 0 and queues[row] >= limits[row]
        if now - since >= cfg.for_seconds or dropping:
            held[row] = now - since

    def finding(row: int) -> Finding:
        details = (
            Detail("accept_queue", queues[row]),
            Detail("accept_queue_limit", limits[row]),
            Detail("listen_overflows_since_last_poll", overflows),
            Detail("held_seconds", round(held[row], 1)),
        )
        return connection_finding(LISTEN_SATURATED, tracked, table.socket(row), held[row], details)

    outcome = mass_outcome(LISTEN_SATURATED, tracked, list(held), finding)
    return Outcome(
        findings=outcome.findings,
        counts=outcome.counts,
        port_values=MappingProxyType({QUEUE_LENGTH: lengths, QUEUE_LIMIT: caps}),
    )


SPEC = register(
    DetectorSpec(
        name="listen_saturation",
        settings=ListenSaturationConfig,
        detect=detect_listen_saturation,
        kinds=(
            KindSpec(
                LISTEN_SATURATED,
                "tcpwatchd_listen_saturated_listeners",
                "LISTEN sockets of the process whose accept queue has stayed at least "
                "detect.listen_saturation.min_fill of its limit for for_seconds, or is full while "
                "ListenOverflows rise: new clients are being dropped.",
                "5dd92fc1745f44cb98dee1290e2160d5",
            ),
        ),
        values=(
            ValueGauge(
                QUEUE_LENGTH,
                "tcpwatchd_listen_queue_length",
                "Connections waiting in the accept queue of the process's listener on the port.",
                per_port=True,
            ),
            ValueGauge(
                QUEUE_LIMIT,
                "tcpwatchd_listen_queue_limit",
                "The accept queue limit (min(backlog, net.core.somaxconn)) of the listener on the port.",
                per_port=True,
            ),
        ),
    )
)
