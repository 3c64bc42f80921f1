"""The exporter renders a finished poll: read back through a real registry and the text parser."""

from __future__ import annotations

from types import MappingProxyType

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tcpwatchd.config import DetectConfig
from tcpwatchd.model import SourceStatus, TcpState
from tcpwatchd.outputs.prometheus import DurationHistogram, LatestPoll, TcpwatchdCollector
from tcpwatchd.poller import PollResult
from tcpwatchd.report import build_report
from tcpwatchd.snapshot import Snapshot, count_by_state_and_process
from tcpwatchd.table import SocketTable
from tcpwatchd.tracker import Tracker
from tests.support.builders import NO_POD, owner, sock

HOSTILE = 'we"ird\\name\nx\\xff'


def _result(at: float, sockdiag_ok: bool = True) -> PollResult:
    sockets = [
        sock(TcpState.LISTEN, remote=("0.0.0.0", 0), inode=1),
        sock(TcpState.ESTABLISHED, inode=2),
        sock(TcpState.CLOSE_WAIT, remote=("127.0.0.1", 40001), inode=3),
        sock(TcpState.TIME_WAIT, remote=("127.0.0.1", 40002), inode=0),
    ]
    snap = Snapshot(
        taken_at=1_700_000_000.0 + at,
        monotonic=at,
        source="sockdiag",
        sockets=SocketTable.of(sockets),
        owners=MappingProxyType({1: owner(HOSTILE, 10), 2: owner(HOSTILE, 10), 3: owner("api", 11)}),
        kernel_counters=MappingProxyType({"TcpExt.TCPAbortOnClose": 7, "TcpExt.TCPAbortOnData": 2}),
        sources=(SourceStatus("sockdiag", sockdiag_ok, 0.01), SourceStatus("owners", True, 0.002)),
    )
    tracked = Tracker().update(snap)
    report = build_report(tracked, DetectConfig())
    return PollResult(tracked, report, None, None, 0.012, count_by_state_and_process(snap))


def _registry(latest: LatestPoll, durations: DurationHistogram) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TcpwatchdCollector(latest, durations))
    return registry


def test_exposition_is_valid_with_hostile_names_and_counts_match() -> None:
    latest, durations = LatestPoll(), DurationHistogram()
    latest.publish(_result(0.0))
    durations.observe(0.012)
    registry = _registry(latest, durations)
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}  # raises on invalid text
    assert "tcpwatchd_sockets" in families
    get = registry.get_sample_value
    assert get("tcpwatchd_sockets", {"state": "listen", "process": HOSTILE, **NO_POD}) == 1
    assert get("tcpwatchd_sockets", {"state": "established", "process": HOSTILE, **NO_POD}) == 1
    assert get("tcpwatchd_sockets", {"state": "close_wait", "process": "api", **NO_POD}) == 1
    assert get("tcpwatchd_sockets", {"state": "time_wait", "process": "", **NO_POD}) == 1
    own = {"namespace": "", "pod": "", "netns": ""}  # tcpwatchd's own network namespace
    assert get("tcpwatchd_kernel_tcp_aborts_total", {"reason": "on_close", **own}) == 7
    assert get("tcpwatchd_kernel_tcp_aborts_total", {"reason": "on_data", **own}) == 2
    assert get("tcpwatchd_kernel_tcp_aborts_total", {"reason": "on_memory", **own}) is None  # absent here
    assert get("tcpwatchd_network_namespaces", {"mode": "sockdiag"}) == 1  # only the own one
    assert get("tcpwatchd_source_success", {"source": "sockdiag"}) == 1
    assert get("tcpwatchd_poll_duration_seconds_bucket", {"le": "0.025"}) == 1
    assert get("tcpwatchd_poll_duration_seconds_bucket", {"le": "0.01"}) == 0
    assert get("tcpwatchd_build_info", {"version": "0.1.0"}) == 1
    assert get("tcpwatchd_last_poll_timestamp_seconds") == 1_700_000_000.0


def test_a_failed_poll_keeps_the_last_success_timestamp() -> None:
    latest = LatestPoll()
    latest.publish(_result(0.0))
    latest.publish(_result(10.0, sockdiag_ok=False))
    registry = _registry(latest, DurationHistogram())
    assert registry.get_sample_value("tcpwatchd_last_poll_timestamp_seconds") == 1_700_000_000.0
    assert registry.get_sample_value("tcpwatchd_source_success", {"source": "sockdiag"}) == 0


def test_before_the_first_poll_only_build_info_and_durations() -> None:
    registry = _registry(LatestPoll(), DurationHistogram())
    assert registry.get_sample_value("tcpwatchd_build_info", {"version": "0.1.0"}) == 1
    assert (
        registry.get_sample_value("tcpwatchd_sockets", {"state": "listen", "process": "", **NO_POD}) is None
    )
