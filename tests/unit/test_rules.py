"""`[[override]]` and `[ignore]`: which settings judge which sockets, counted exactly, validated whole."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from tcpwatchd.cli import main
from tcpwatchd.config import Config, ConfigError, parse_config
from tcpwatchd.detectors import Context, registered
from tcpwatchd.detectors.base import LISTED_PER_PROCESS
from tcpwatchd.model import Owner, ProcessLabels, Socket, TcpState, Workload
from tcpwatchd.report import Report, build_report
from tcpwatchd.rules import IGNORED, Rules
from tcpwatchd.scope import Scope
from tests.support.builders import owner
from tests.support.detect_snapshots import Scenario, conn, info, listener

REPO = Path(__file__).resolve().parents[2]
PAYMENTS = Owner(pid=10, name="java", start_time=1.0, user="app", unit="payments.service")
ORDERS = Owner(pid=20, name="java", start_time=1.0, user="app", unit="orders.service")
POD = Owner(pid=30, name="api", start_time=1.0, user="app", workload=Workload("shop", "api-7d9f", "app"))


def _cw(port: int, local_port: int = 8080, remote: str = "198.18.0.2") -> Socket:
    return conn(remote, port, local_port=local_port, state=TcpState.CLOSE_WAIT, rqueue=1)


def _report(cfg: Config, sockets: dict[Socket, Owner | None], at: tuple[float, ...] = (0, 60)) -> Report:
    sc = Scenario()
    owners = {s: o for s, o in sockets.items() if o is not None}
    report = None
    for t in at:
        report = build_report(sc.poll(t, list(sockets), owners), cfg.detect, rules=Rules.of(cfg))
    assert report is not None
    return report


def _count(report: Report, kind: str, labels: ProcessLabels) -> int:
    return next((p.count(kind) for p in report.processes if p.labels == labels), 0)


OVERRIDE = """
[detect.close_wait]
min_age_seconds = 300
[[override]]
name = "payments"
match = { process = "java", unit = "payments.*" }
detect.close_wait.min_age_seconds = 30
"""


def test_the_same_leak_in_two_services_is_judged_by_each_ones_rule() -> None:
    cfg = parse_config(OVERRIDE)
    leaks = {_cw(40000 + i): PAYMENTS for i in range(3)} | {_cw(41000 + i, 8081): ORDERS for i in range(3)}
    report = _report(cfg, leaks)
    found = report.of_kind("close_wait")
    assert {f.unit for f in found} == {"payments.service"} and len(found) == 3
    assert {f.rule for f in found} == {"payments"}
    # One series for both (same labels): counted once per socket, by the settings of its own group.
    assert _count(report, "close_wait", ProcessLabels("java")) == 3
    assert [r.name for r in report.detectors].count("close_wait") == 1 and report.ran("close_wait")


def test_first_match_wins_and_enabled_false_turns_a_detector_off() -> None:
    cfg = parse_config(
        OVERRIDE.replace('name = "payments"\n', "")
        + '[[override]]\nmatch.unit = "payments.service"\ndetect.close_wait.enabled = false\n'
        + '[[override]]\nmatch = { namespace = "shop", pod = "api-*" }\ndetect.close_wait.enabled = false\n'
    )
    leaks = {_cw(40000): PAYMENTS, _cw(42000, 8082): POD, _cw(43000, 8083): None}
    report = _report(cfg, leaks, at=(0, 400))
    by_rule = {(f.process, f.rule) for f in report.of_kind("close_wait")}
    assert by_rule == {("java", "override[1]"), ("", "")}  # the pod's detector is off; no owner: defaults


def test_counts_stay_exact_past_the_listed_findings() -> None:
    """Groups and ignores are applied per socket before counting, not by filtering what is listed."""
    cfg = parse_config(OVERRIDE + "[ignore]\nlocal_ports = [9100]\n")
    n = 3 * LISTED_PER_PROCESS
    leaks: dict[Socket, Owner | None] = {_cw(30000 + i, 9100): PAYMENTS for i in range(n)}
    leaks |= {_cw(40000 + i): PAYMENTS for i in range(n)} | {_cw(50000 + i, 8081): ORDERS for i in range(n)}
    report = _report(cfg, leaks)
    assert _count(report, "close_wait", ProcessLabels("java")) == n  # payments' 8080 only
    assert len(report.of_kind("close_wait")) == LISTED_PER_PROCESS
    assert all(f.local.endswith(":8080") for f in report.of_kind("close_wait"))


IGNORE = """
[detect.close_wait]
min_age_seconds = 0
[ignore]
local_ports = [9100]
remote_networks = ["10.20.0.0/16", "fd00:5::/64"]
processes = ["node_exp*"]
"""


@pytest.mark.parametrize(
    ("sock", "who", "ignored"),
    [
        (_cw(40000, 9100), owner("app"), True),
        (_cw(40000, 9101), owner("app"), False),
        (_cw(40000, remote="10.20.3.4"), owner("app"), True),
        (_cw(40000, remote="10.21.3.4"), owner("app"), False),
        (conn("::ffff:10.20.3.4", 40000, local="::", state=TcpState.CLOSE_WAIT), owner("app"), True),
        (conn("fd00:5::7", 40000, local="fd00:5::1", state=TcpState.CLOSE_WAIT), owner("app"), True),
        (conn("fd00:6::7", 40000, local="fd00:5::1", state=TcpState.CLOSE_WAIT), owner("app"), False),
        (_cw(40000), owner("node_exporter"), True),
        (_cw(40000), owner("nodejs"), False),
    ],
)
def test_ignored_sockets_leave_detection_but_stay_in_the_state_counts(
    sock: Socket, who: Owner, ignored: bool
) -> None:
    cfg = parse_config(IGNORE)
    sc = Scenario()
    tracked = sc.poll(0, [sock], {sock: who})
    report = build_report(tracked, cfg.detect, rules=Rules.of(cfg))
    assert (report.of_kind("close_wait") == ()) is ignored
    assert (Rules.of(cfg).row_codes(tracked) == bytes([IGNORED])) is ignored
    assert any(p.labels == who.labels for p in report.processes)  # still a process with sockets


def test_an_ignored_network_never_storms() -> None:
    cfg = parse_config(
        "[detect.reconnect_storm]\nmin_new_connections = 3\nwindow_seconds = 10\n"
        "min_baseline_per_second = 0.01\n[ignore]\nremote_networks = ['198.18.0.0/24']\n"
    )
    sc = Scenario()
    lsn, server = listener(8080), owner("srv")
    report = None
    for t in range(6):  # a new connection from each peer every poll
        socks = [lsn, conn("198.18.0.2", 40000 + t), conn("198.18.1.2", 40000 + t)]
        report = build_report(
            sc.poll(t, socks, dict.fromkeys(socks, server)), cfg.detect, rules=Rules.of(cfg)
        )
    assert report is not None
    assert {f.peer for f in report.of_kind("reconnect_storm")} == {"198.18.1.2"}


def test_every_detector_honours_its_scope() -> None:
    """A detector module must take its rows through the shared helpers: a run that judges nothing
    finds nothing (else overrides and ignores would count its sockets twice)."""
    sc = Scenario()
    socks = [
        listener(8080),
        *[_cw(40000 + i) for i in range(3)],
        *[conn(f"198.18.0.{i}", 40000, rqueue=100, tcp_info=info(10**7, retransmits=9)) for i in range(2, 9)],
    ]
    tracked = None
    for t in (0, 5000):
        tracked = sc.poll(t, socks, dict.fromkeys(socks, owner("srv")))
    assert tracked is not None
    cfg = parse_config("")
    full = build_report(tracked, cfg.detect)
    assert {str(k) for p in full.processes for k in p.counts} >= {"close_wait", "keepalive_off"}
    nothing = replace(tracked, scope=Scope(bytes(len(socks)), lambda o, port, remote: False))
    for spec in registered():
        outcome = spec.detect(nothing, spec.settings_in(cfg.detect), Context())
        assert not outcome.findings and not any(outcome.counts.values()), spec.name


@pytest.mark.parametrize(
    ("toml", "problems"),
    [
        (
            '[[override]]\nmatch.process = "a"\n[[override]]\nmatch.process = "b"\n'
            "detect.phantom.idle_secs = 3\ndetect.nonsense.enabled = false\n",
            ["override[2].detect.phantom.idle_secs: unknown key", "override[2].detect.nonsense: unknown key"],
        ),
        ('[[override]]\nmatch.proces = "a"\n', ["override[1].match.proces: unknown key"]),
        ("[[override]]\nmatch = {}\n", ["override[1].match: Value error, match needs at least one of"]),
        ('[[override]]\ndetect.phantom.idle_seconds = 1\n', ["override[1].match: Field required"]),
        (
            '[[override]]\nmatch.pod = "x"\ndetect.reconnect_storm.min_new_connections = 1\n',
            ["override[1].detect.reconnect_storm.min_new_connections: Input should be greater than"],
        ),
        (
            '[[override]]\nmatch.pod = "x"\ndetect.close_wait.enabled = "no"\n',
            ["override[1].detect.close_wait.enabled"],
        ),
        (
            "[ignore]\nlocal_ports = [0, 80]\nremote_networks = ['10.0.0.1/8', 'nope']\nprocesses = ['']\n",
            ["ignore.local_ports[1]", "ignore.remote_networks[1]", "ignore.remote_networks[2]",
             "ignore.processes[1]"],
        ),
    ],
)  # fmt: skip
def test_invalid_rules_are_refused_whole_with_their_position(toml: str, problems: list[str]) -> None:
    with pytest.raises(ConfigError) as info_:
        parse_config("[daemon]\npoll_interval_seconds = 5\n" + toml)
    got = info_.value.problems
    assert len(got) == len(problems), got
    for want, have in zip(problems, got, strict=True):
        assert have.startswith(want), (want, got)


def test_check_config_refuses_a_bad_rule_and_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[override]]\nmatch.process = "x"\ndetect.phantom.idle_secs = 3\n')
    assert main(["check-config", str(bad)]) != 0
    assert "override[1].detect.phantom.idle_secs: unknown key" in capsys.readouterr().err


def test_the_commented_examples_in_config_example_are_valid() -> None:
    text = (REPO / "config.example.toml").read_text()
    block = text[text.index("# [[override]]\n") :]
    uncommented = "\n".join(re.sub(r"^# ?", "", line) for line in block.splitlines())
    cfg = parse_config(uncommented)
    assert len(cfg.override) == 2 and cfg.override[0].settings_for("phantom") == {"idle_seconds": 3600.0}
    assert Rules.of(cfg).owner_code(Owner(1, "java-x", 0.0, "u", unit="orders.service")) == 1
