"""Comparing readings with desired values (pure): statuses, exit codes, derived times."""

from __future__ import annotations

import pytest

from tcpwatchd.sysctl.audit import (
    EXIT_COMPLIANT,
    EXIT_DRIFT,
    EXIT_ERROR,
    Status,
    SysctlWrite,
    build_report,
)
from tcpwatchd.sysctl.procsys import Reading

KEEPALIVE = {
    "net.ipv4.tcp_keepalive_time": 600,
    "net.ipv4.tcp_keepalive_intvl": 30,
    "net.ipv4.tcp_keepalive_probes": 5,
}
ABSENT = "not present in this kernel or network namespace"
EACCES = "cannot read: Permission denied (EACCES)"


def _readings(**overrides: Reading) -> tuple[Reading, ...]:
    """Kernel defaults, as a fresh network namespace on Linux 6.18 shows them."""
    base = {
        "net.ipv4.tcp_keepalive_time": Reading("net.ipv4.tcp_keepalive_time", 7200),
        "net.ipv4.tcp_keepalive_intvl": Reading("net.ipv4.tcp_keepalive_intvl", 75),
        "net.ipv4.tcp_keepalive_probes": Reading("net.ipv4.tcp_keepalive_probes", 9),
        "net.ipv4.tcp_retries2": Reading("net.ipv4.tcp_retries2", 15),
        "net.ipv4.tcp_fin_timeout": Reading("net.ipv4.tcp_fin_timeout", 60),
        "net.ipv4.tcp_orphan_retries": Reading("net.ipv4.tcp_orphan_retries", 0),
        "net.ipv4.tcp_max_orphans": Reading("net.ipv4.tcp_max_orphans", None, ABSENT, missing=True),
        "net.core.somaxconn": Reading("net.core.somaxconn", 4096),
        "net.ipv4.tcp_rto_max_ms": Reading("net.ipv4.tcp_rto_max_ms", 120000),
    }
    for r in overrides.values():
        base[r.name] = r
    return tuple(base.values())


def test_defaults_against_the_keepalive_policy_drift() -> None:
    report = build_report(_readings(), KEEPALIVE, netns="net:[1]")
    statuses = {e.name: e.status for e in report.entries}
    assert statuses["net.ipv4.tcp_keepalive_time"] is Status.DRIFT
    assert statuses["net.ipv4.tcp_retries2"] is Status.REPORTED
    assert statuses["net.ipv4.tcp_max_orphans"] is Status.ABSENT
    assert report.exit_code == EXIT_DRIFT and report.ok and report.error_summary() == ""
    assert [e.name for e in report.drifted] == list(KEEPALIVE)
    assert report.idle_detection_seconds == 7875
    assert report.inflight_detection_seconds == pytest.approx(924.6)


def test_compliant_when_every_desired_value_holds() -> None:
    readings = _readings(
        a=Reading("net.ipv4.tcp_keepalive_time", 600),
        b=Reading("net.ipv4.tcp_keepalive_intvl", 30),
        c=Reading("net.ipv4.tcp_keepalive_probes", 5),
    )
    report = build_report(readings, KEEPALIVE)
    assert report.exit_code == EXIT_COMPLIANT
    assert all(e.compliant for e in report.entries if e.desired is not None)
    assert report.idle_detection_seconds == 750


@pytest.mark.parametrize(
    ("reading", "desired", "status", "exit_code"),
    [
        (Reading("net.ipv4.tcp_retries2", None, EACCES), {}, Status.ERROR, 2),
        # An absent report-only sysctl is normal (tcp_max_orphans outside the initial namespace)...
        (Reading("net.ipv4.tcp_max_orphans", None, ABSENT, missing=True), {}, Status.ABSENT, 0),
        # ...but a desired one that does not exist here can never be compliant.
        (Reading("net.ipv4.tcp_max_orphans", None, ABSENT, missing=True), {"net.ipv4.tcp_max_orphans": 1},
         Status.ERROR, 2),
        (Reading("net.core.somaxconn", 4096), {"net.core.somaxconn": 4096}, Status.OK, 0),
        (Reading("net.core.somaxconn", 4096), {"net.core.somaxconn": 1024}, Status.DRIFT, 1),
    ],
)  # fmt: skip
def test_status_and_exit_code(
    reading: Reading, desired: dict[str, int], status: Status, exit_code: int
) -> None:
    report = build_report(_readings(x=reading), desired)
    entry = report.entry(reading.name)
    assert entry is not None and entry.status is status
    assert report.exit_code == exit_code
    assert (entry.error != "") is (reading.value is None)


def test_unreadable_entry_is_an_error_that_names_the_sysctl() -> None:
    bad = Reading("net.ipv4.tcp_keepalive_intvl", None, "cannot parse: expected one integer, got 'x'")
    report = build_report(_readings(x=bad), KEEPALIVE)
    assert report.errors == ("net.ipv4.tcp_keepalive_intvl: cannot parse: expected one integer, got 'x'",)
    assert not report.ok and report.exit_code == EXIT_ERROR
    entry = report.entry("net.ipv4.tcp_keepalive_intvl")
    assert entry is not None and entry.compliant is False
    assert report.idle_detection_seconds is None
    assert "net.ipv4.tcp_keepalive_intvl" not in report.values()


def test_failed_write_and_refused_entries_are_errors() -> None:
    writes = (SysctlWrite("net.ipv4.tcp_keepalive_time", 7200, 600, "Read-only file system (EROFS)"),)
    report = build_report(_readings(), KEEPALIVE, writes=writes, problems=("x: not a sysctl name",))
    assert report.errors == (
        "x: not a sysctl name",
        "net.ipv4.tcp_keepalive_time: cannot write 600: Read-only file system (EROFS)",
    )
    assert report.exit_code == EXIT_ERROR


@pytest.mark.parametrize(
    ("rto_max", "seconds"),
    [
        (Reading("net.ipv4.tcp_rto_max_ms", 120000), 924.6),
        (Reading("net.ipv4.tcp_rto_max_ms", 60000), 522.2),  # ilog2(300) = 8: 511 * 0.2 + 7 * 60
        (Reading("net.ipv4.tcp_rto_max_ms", None, ABSENT, missing=True), 924.6),  # before 6.15: TCP_RTO_MAX
        (Reading("net.ipv4.tcp_rto_max_ms", None, "cannot read: Permission denied (EACCES)"), None),
    ],
)
def test_inflight_time_follows_tcp_rto_max_ms(rto_max: Reading, seconds: float | None) -> None:
    report = build_report(_readings(x=rto_max), {})
    assert report.inflight_detection_seconds == (None if seconds is None else pytest.approx(seconds))


def test_negative_keepalive_values_give_no_idle_time() -> None:
    # proc_dointvec_jiffies accepts negative numbers; no model says what they mean.
    report = build_report(_readings(x=Reading("net.ipv4.tcp_keepalive_time", -5)), {})
    assert report.idle_detection_seconds is None


def test_values_and_unknown_readings() -> None:
    report = build_report((*_readings(), Reading("net.ipv4.ip_forward", 1)), {})
    assert report.entry("net.ipv4.ip_forward") is None
    values = report.values()
    assert values["net.ipv4.tcp_retries2"] == 15 and "net.ipv4.tcp_max_orphans" not in values
