"""Openings, closings and the reconnect storm per network namespace: the same port listens in tcpwatchd's
own namespace and in a pod's, and a crash loop against the pod's is the pod's, never the host's."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from tcpwatchd.detectors.reconnect_storm import RECONNECT_STORM
from tcpwatchd.model import ProcessLabels, Socket, TcpState, WatchedNetns, Workload
from tcpwatchd.report import Report, build_report
from tcpwatchd.snapshot import Snapshot
from tcpwatchd.table import SocketTable
from tcpwatchd.tracker import Tracker
from tests.support.builders import owner
from tests.support.detect_snapshots import conn, detect_config, listener

WEB = WatchedNetns(7, "net:[4026532281]", "sockdiag", "shop", "web-1")
HOST_SRV = owner("server", 10)
POD_SRV = replace(owner("server", 20), workload=Workload("shop", "web-1", "app"))
PEER = "198.18.0.2"
BURST = 100  # connections per poll from PEER, every poll 10 s apart: far above the 1/s floor


def _in_pod(sock: Socket) -> Socket:
    return replace(sock, netns=WEB.netns)


def _poll(tracker: Tracker, at: float, pod_listener: bool, start_port: int) -> Report:
    """Both namespaces listen on 8080 (the pod's only when `pod_listener`); BURST connections from PEER
    to the pod's 8080 opened and closed since the previous poll (TIME_WAIT, no owner)."""
    host = listener(8080, inode=1)
    socks = [host]
    if pod_listener:
        socks.append(_in_pod(listener(8080, inode=2)))
    burst = [conn(PEER, start_port + i, state=TcpState.TIME_WAIT, inode=0) for i in range(BURST)]
    socks += [_in_pod(s) for s in burst]
    snap = Snapshot(
        taken_at=1_700_000_000.0 + at,
        monotonic=at,
        source="sockdiag",
        sockets=SocketTable.of(socks),
        owners=MappingProxyType({1: HOST_SRV, 2: POD_SRV}),
        namespaces=(WEB,),
    )
    return build_report(tracker.update(snap), detect_config(), None)


def _run(pod_listener: bool) -> Report:
    """Peer ports above 8080: the accepted side even where no listener is visible (destroy_parse.side_of)."""
    tracker = Tracker()
    report = _poll(tracker, 0.0, pod_listener, 40000)
    for k in range(1, 4):
        report = _poll(tracker, k * 10.0, pod_listener, 40000 + k * BURST)
    return report


def test_a_storm_on_a_pod_s_port_is_the_pod_s_listener_s_not_the_host_s() -> None:
    report = _run(pod_listener=True)
    [storm] = report.of_kind(RECONNECT_STORM)
    assert (storm.process, storm.pid, storm.netns) == ("server", 20, WEB.netns)
    assert (storm.namespace, storm.pod, storm.container) == ("shop", "web-1", "app")
    assert dict(report.opened_totals) == dict(report.closed_totals) == {POD_SRV.labels: 3 * BURST}


def test_without_a_visible_listener_the_openings_count_under_the_pod() -> None:
    report = _run(pod_listener=False)
    pod = ProcessLabels("", "shop", "web-1", "")
    assert dict(report.opened_totals) == dict(report.closed_totals) == {pod: 3 * BURST}
    [storm] = report.of_kind(RECONNECT_STORM)
    assert (storm.process, storm.netns, storm.pod) == ("", WEB.netns, "web-1")
    assert storm.identity != replace(storm, netns=0).identity
