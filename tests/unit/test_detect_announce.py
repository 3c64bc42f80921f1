from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import pytest

from tcpwatchd.config import DetectConfig
from tcpwatchd.detectors import Context, Finding, Outcome
from tcpwatchd.detectors.base import LISTED_PER_PROCESS, listed_outcome
from tcpwatchd.detectors.close_wait import CLOSE_WAIT
from tcpwatchd.detectors.keepalive_off import KEEPALIVE_OFF, KeepaliveOffConfig
from tcpwatchd.detectors.keepalive_off import SPEC as KEEPALIVE_OFF_SPEC
from tcpwatchd.model import TcpState, TimerKind
from tcpwatchd.outputs.announce import FINDING_LOGGER, HEALTH_LOGGER, Announcer
from tcpwatchd.report import Report, build_report
from tcpwatchd.tracker import TrackedPoll
from tests.support.builders import owner
from tests.support.detect_snapshots import Scenario, conn, detect_config

CFG = detect_config(close_wait={"min_age_seconds": 10})


def _records(caplog: pytest.LogCaptureFixture, logger: str = FINDING_LOGGER) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger]


def test_a_finding_is_logged_once_while_it_lasts_and_again_when_it_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    sc, ann = Scenario(), Announcer()
    app = owner("app", 42, unit="app.service")
    cw = conn("198.18.0.2", 40001, state=TcpState.CLOSE_WAIT, rqueue=1)
    est = conn("198.18.0.2", 40001)
    timeline = [(0, cw), (20, cw), (30, cw), (40, cw), (50, est), (60, est), (70, est), (80, cw), (100, cw)]
    logged_at = []
    for t, sock in timeline:
        new = ann.announce(sc.report(t, [sock], {sock: app}, CFG))
        logged_at += [t for f in new if f.kind == CLOSE_WAIT]
    # Crossed 10 s at 20; gone for three polls from 50 (forgotten); back in CLOSE_WAIT at 80, 20 s old at 100.
    assert logged_at == [20, 100]
    records = [r for r in _records(caplog) if "close_wait" in r.getMessage()]
    assert len(records) == 2
    fields = records[0].tcpwatchd_fields  # type: ignore[attr-defined]
    assert fields == {
        "TCPWATCHD_FINDING": "close_wait",
        "MESSAGE_ID": "8651c89853874c8f9fbfe9581f3ebf94",  # the kind's journal id, from its registration
        "TCPWATCHD_PROCESS": "app",
        "TCPWATCHD_PID": 42,
        "TCPWATCHD_PEER": "198.18.0.2",
        "TCPWATCHD_AGE_SECONDS": 20.0,
        "TCPWATCHD_SOCKET": "198.18.0.1:8080 -> 198.18.0.2:40001",
        "TCPWATCHD_UNIT": "app.service",
        "TCPWATCHD_DETAILS": "age_is_lower_bound=yes",  # in CLOSE_WAIT since tcpwatchd's first poll
    }
    assert records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    for fact in (
        "close_wait",
        "process='app'",
        "pid=42",
        "peer=198.18.0.2",
        "age=20.0s",
        "198.18.0.1:8080 -> ",
    ):
        assert fact in message


@pytest.mark.parametrize(
    ("present", "announced_at"),
    [
        ([1, 1, 0, 1, 0, 0, 1], [0]),  # flapping (a busy socket's timer hides keepalive now and then)
        ([1, 0, 0, 0, 1], [0, 4]),  # gone for three polls: forgotten, then announced anew
        ([0, 1, 1, 1], [1]),
    ],
)
def test_a_finding_that_flaps_is_one_incident(present: list[int], announced_at: list[int]) -> None:
    sc, ann = Scenario(), Announcer(forget_after_polls=3)
    app = owner("app", 42)
    off, busy = conn(), conn(timer=TimerKind.RETRANSMIT)
    got = []
    for i, shown in enumerate(present):
        sock = off if shown else busy
        if ann.announce(sc.report(i, [sock], {sock: app})):
            got.append(i)
    assert got == announced_at


def test_a_hostile_process_name_stays_on_one_escaped_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    evil = owner("x\nFAKE: root login\x1b[2J", 7)
    sock = conn()
    Announcer().announce(Scenario().report(0, [sock], {sock: evil}))
    [record] = [r for r in _records(caplog) if "keepalive_off" in r.getMessage()]
    assert "\n" not in record.getMessage() and "\x1b" not in record.getMessage()
    assert "process='x\\nFAKE: root login\\x1b[2J'" in record.getMessage()
    assert record.tcpwatchd_fields["TCPWATCHD_PROCESS"] == "x\nFAKE: root login\x1b[2J"  # type: ignore[attr-defined]


def test_many_new_findings_at_once_are_capped_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    socks = [conn(remote_port=40000 + i) for i in range(15)]
    new = Announcer(max_per_kind=5).announce(Scenario().report(0, socks, dict.fromkeys(socks, owner())))
    assert len([f for f in new if f.kind == KEEPALIVE_OFF]) == 15
    messages = [r.getMessage() for r in _records(caplog)]
    assert len([m for m in messages if m.startswith("new finding: keepalive_off")]) == 5
    assert (
        "10 more keepalive_off findings not logged one by one (15 in this poll; see `tcpwatchd snapshot`)"
        in messages
    )


def test_a_mass_condition_is_counted_whole_and_listed_per_process() -> None:
    """60 connections without keepalive in two processes: the gauges count all 60, the report names
    LISTED_PER_PROCESS of each process, and the log does not grow with the host."""
    socks = [conn(remote_port=40000 + i) for i in range(60)]
    owners = {s: owner(f"app{i % 2}", pid=1 + i % 2) for i, s in enumerate(socks)}
    report = Scenario().report(0, socks, owners)
    assert {s.process: s.count(KEEPALIVE_OFF) for s in report.processes} == {"app0": 30, "app1": 30}
    listed = Counter(f.process for f in report.of_kind(KEEPALIVE_OFF))
    assert listed == {"app0": LISTED_PER_PROCESS, "app1": LISTED_PER_PROCESS}


def _report(tracked: TrackedPoll, run: Detect) -> Report:
    return build_report(tracked, DetectConfig(), None, [replace(KEEPALIVE_OFF_SPEC, detect=run)])


Detect = Callable[[TrackedPoll, KeepaliveOffConfig, Context], Outcome]


def _finding(tracked: TrackedPoll, cfg: KeepaliveOffConfig, ctx: Context) -> Outcome:
    f = Finding(KEEPALIVE_OFF, "app", 1, "", "198.18.0.1:80", "198.18.0.2:1", "198.18.0.2", 1.0)
    return listed_outcome((f,), degraded="half blind")


def _raises(tracked: TrackedPoll, cfg: KeepaliveOffConfig, ctx: Context) -> Outcome:
    raise RuntimeError("boom")


def _clean(tracked: TrackedPoll, cfg: KeepaliveOffConfig, ctx: Context) -> Outcome:
    return Outcome()


def test_detector_health_changes_are_logged_once_and_a_failure_does_not_reannounce(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    sc, ann = Scenario(), Announcer()
    tracked = sc.poll(0, [], {})
    runs = [_finding, _finding, _raises, _raises, _finding, _clean]
    announced = [len(ann.announce(_report(tracked, fn))) for fn in runs]
    assert announced == [1, 0, 0, 0, 0, 0]
    health = [r.getMessage() for r in _records(caplog, HEALTH_LOGGER)]
    assert health == [
        "detector keepalive_off is degraded: half blind",
        "detector keepalive_off failed: RuntimeError: boom",
        "detector keepalive_off is no longer failing",
        "detector keepalive_off is no longer degraded",
    ]
