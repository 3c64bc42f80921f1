"""The registry, the report, and the metrics built from it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from tcpwatchd.config import DetectConfig
from tcpwatchd.detectors import Context, Finding, Outcome, registered
from tcpwatchd.detectors.base import endpoint, listed_outcome, peer_address
from tcpwatchd.detectors.close_wait import CLOSE_WAIT, CloseWaitConfig
from tcpwatchd.detectors.close_wait import SPEC as CLOSE_WAIT_SPEC
from tcpwatchd.detectors.keepalive_off import KEEPALIVE_OFF, KeepaliveOffConfig
from tcpwatchd.detectors.keepalive_off import SPEC as KEEPALIVE_OFF_SPEC
from tcpwatchd.model import TcpState, TimerKind
from tcpwatchd.outputs.detector_metrics import detector_metrics
from tcpwatchd.report import Report, build_report
from tcpwatchd.tracker import TrackedPoll
from tests.support.builders import NO_POD, owner
from tests.support.detect_snapshots import Scenario, conn, detect_config, info

DETECTORS = [
    "close_wait",
    "phantom",
    "reconnect_storm",
    "keepalive_off",
    "stalled_receive",
    "unresponsive_peer",
    "listen_saturation",
    "fd_exhaustion",
    "port_exhaustion",
]
LEAKY = owner("leaky", 10)
QUIET = owner("quiet", 20)


class _Collect(Collector):
    def __init__(self, report: Report) -> None:
        self.report = report

    def collect(self) -> Iterator[Metric]:
        yield from detector_metrics(self.report)


def _registry(report: Report) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(_Collect(report))
    return reg


def _leak_report(detect: DetectConfig | None = None) -> Report:
    """'leaky' holds a CLOSE_WAIT socket for 400 s (no keepalive elsewhere); 'quiet' holds a healthy one."""
    sc = Scenario()
    cw = conn(remote_port=1, state=TcpState.CLOSE_WAIT, rqueue=1)
    ok = conn(remote_port=2, timer=TimerKind.KEEPALIVE, tcp_info=info(0))
    owners = {cw: LEAKY, ok: QUIET}
    sc.report(0, [cw, ok], owners, detect)
    return sc.report(400, [cw, ok], owners, detect)


def test_every_detector_is_registered_by_its_config_name_and_on_by_default() -> None:
    assert sorted(r.name for r in registered()) == sorted(DETECTORS)
    assert all(r.enabled(DetectConfig()) for r in registered())
    assert all(hasattr(DetectConfig(), r.name) for r in registered())
    assert sorted(r.name for r in _leak_report().detectors) == sorted(DETECTORS)


def test_a_disabled_detector_does_not_run_and_emits_no_gauges() -> None:
    report = _leak_report(detect_config(close_wait={"enabled": False}))
    assert "close_wait" not in [r.name for r in report.detectors]
    assert report.of_kind(CLOSE_WAIT) == ()
    reg = _registry(report)
    assert reg.get_sample_value("tcpwatchd_close_wait_leaked_sockets", {"process": "leaky", **NO_POD}) is None
    assert reg.get_sample_value("tcpwatchd_keepalive_off_connections", {"process": "leaky", **NO_POD}) == 0.0


def test_gauges_are_per_process_with_zeros_for_processes_with_sockets() -> None:
    reg = _registry(_leak_report())
    get = reg.get_sample_value
    assert get("tcpwatchd_close_wait_leaked_sockets", {"process": "leaky", **NO_POD}) == 1.0
    assert get("tcpwatchd_close_wait_oldest_age_seconds", {"process": "leaky", **NO_POD}) == 400.0
    assert get("tcpwatchd_close_wait_leaked_sockets", {"process": "quiet", **NO_POD}) == 0.0
    assert get("tcpwatchd_close_wait_oldest_age_seconds", {"process": "quiet", **NO_POD}) == 0.0
    for name in (
        "tcpwatchd_phantom_connections",
        "tcpwatchd_idle_suspect_connections",
        "tcpwatchd_reconnect_storm_peers",
        "tcpwatchd_keepalive_off_connections",
        "tcpwatchd_stalled_receive_connections",
        "tcpwatchd_unresponsive_peer_connections",
    ):
        assert get(name, {"process": "quiet", **NO_POD}) == 0.0, name
    assert get("tcpwatchd_detector_degraded", {"detector": "phantom"}) == 0.0
    assert get("tcpwatchd_detector_success", {"detector": "close_wait"}) == 1.0


def test_a_gauge_returns_to_zero_when_the_condition_ends() -> None:
    sc = Scenario()
    cw = conn(remote_port=1, state=TcpState.CLOSE_WAIT, rqueue=1)
    est = conn(remote_port=2, timer=TimerKind.KEEPALIVE)
    sc.report(0, [cw, est], {cw: LEAKY, est: LEAKY})
    leaking = sc.report(400, [cw, est], {cw: LEAKY, est: LEAKY})
    closed = sc.report(410, [est], {est: LEAKY})
    gone = sc.report(420, [], {})
    name = "tcpwatchd_close_wait_leaked_sockets"
    assert _registry(leaking).get_sample_value(name, {"process": "leaky", **NO_POD}) == 1.0
    assert _registry(closed).get_sample_value(name, {"process": "leaky", **NO_POD}) == 0.0
    assert _registry(gone).get_sample_value(name, {"process": "leaky", **NO_POD}) is None


def test_connections_opened_total_is_a_counter_per_process() -> None:
    sc = Scenario()
    sc.report(0, [conn(remote_port=1)], {})
    a, b = conn(remote_port=2), conn(remote_port=3)
    report = sc.report(10, [a, b], {a: LEAKY, b: QUIET})
    report = sc.report(20, [conn(remote_port=4)], {})
    reg = _registry(report)
    assert reg.get_sample_value("tcpwatchd_connections_opened_total", {"process": "leaky", **NO_POD}) == 1.0
    assert reg.get_sample_value("tcpwatchd_connections_opened_total", {"process": "", **NO_POD}) == 1.0


def test_degraded_shows_in_the_metric() -> None:
    sock = conn()
    report = Scenario(source="procnet").report(0, [sock], {sock: LEAKY})
    reg = _registry(report)
    assert reg.get_sample_value("tcpwatchd_detector_degraded", {"detector": "phantom"}) == 1.0
    assert reg.get_sample_value("tcpwatchd_detector_degraded", {"detector": "keepalive_off"}) == 0.0


def _broken(tracked: TrackedPoll, cfg: CloseWaitConfig, ctx: Context) -> Outcome:
    raise KeyError("a bug")


def _one_finding(tracked: TrackedPoll, cfg: KeepaliveOffConfig, ctx: Context) -> Outcome:
    f = Finding(KEEPALIVE_OFF, "app", 1, "", "198.18.0.1:80", "198.18.0.2:1", "198.18.0.2", 1.0)
    return listed_outcome((f,))


def test_a_detector_that_raises_fails_alone_and_its_gauges_are_absent() -> None:
    tracked = Scenario().poll(0, [conn()], {})
    detectors = [replace(CLOSE_WAIT_SPEC, detect=_broken), replace(KEEPALIVE_OFF_SPEC, detect=_one_finding)]
    report = build_report(tracked, DetectConfig(), None, detectors)
    assert [(r.name, r.ok, r.error) for r in report.detectors] == [
        ("close_wait", False, "KeyError: 'a bug'"),
        ("keepalive_off", True, ""),
    ]
    assert len(report.findings) == 1
    reg = _registry(report)
    assert reg.get_sample_value("tcpwatchd_detector_success", {"detector": "close_wait"}) == 0.0
    assert reg.get_sample_value("tcpwatchd_close_wait_leaked_sockets", {"process": "", **NO_POD}) is None
    assert reg.get_sample_value("tcpwatchd_keepalive_off_connections", {"process": "app", **NO_POD}) == 1.0


@pytest.mark.parametrize(
    ("address", "peer"),
    [
        ("::ffff:198.18.0.2", "198.18.0.2"),
        ("198.18.0.2", "198.18.0.2"),
        ("::1", "::1"),
        ("::ffff:1:2:3", "::ffff:1:2:3"),  # not IPv4-mapped
        ("::ffff:not-an-address", "::ffff:not-an-address"),
    ],
)
def test_peer_address(address: str, peer: str) -> None:
    assert peer_address(address) == peer


@pytest.mark.parametrize(
    ("address", "port", "text"),
    [
        ("198.18.0.2", 80, "198.18.0.2:80"),
        ("::1", 80, "[::1]:80"),
        ("*", 8080, "*:8080"),
        ("::1", "*", "[::1]:*"),
    ],
)
def test_endpoint(address: str, port: int | str, text: str) -> None:
    assert endpoint(address, port) == text


def test_finding_text_and_json_escape_hostile_names() -> None:
    f = Finding(
        CLOSE_WAIT,
        "evil\nname\x1b[31m",
        7,
        "x.service",
        "198.18.0.1:80",
        "198.18.0.2:1",
        "198.18.0.2",
        301.25,
    )
    line = f.describe()
    assert "\n" not in line and "\x1b" not in line
    assert line.startswith("close_wait process='evil\\nname\\x1b[31m' pid=7 unit='x.service' peer=198.18.0.2")
    assert f.to_json()["process"] == "evil\nname\x1b[31m"  # JSON escapes it itself
    assert f.to_json()["age_seconds"] == 301.25
