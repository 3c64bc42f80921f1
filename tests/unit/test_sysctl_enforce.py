"""SysctlPolicy on a fake /proc/sys tree: check, enforce, refusal before any write, re-enforcing, logging."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tcpwatchd.config import SysctlConfig
from tcpwatchd.sysctl.audit import EXIT_COMPLIANT, EXIT_DRIFT, EXIT_ERROR, Status
from tcpwatchd.sysctl.enforce import SysctlPolicy

DEFAULTS = {
    "net.ipv4.tcp_keepalive_time": "7200\n",
    "net.ipv4.tcp_keepalive_intvl": "75\n",
    "net.ipv4.tcp_keepalive_probes": "9\n",
    "net.ipv4.tcp_retries2": "15\n",
    "net.ipv4.tcp_fin_timeout": "60\n",
    "net.ipv4.tcp_orphan_retries": "0\n",
    "net.core.somaxconn": "4096\n",
}
KEEPALIVE = {
    "net.ipv4.tcp_keepalive_time": 600,
    "net.ipv4.tcp_keepalive_intvl": 30,
    "net.ipv4.tcp_keepalive_probes": 5,
}


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A fake procfs root holding the defaults of a fresh network namespace (no tcp_max_orphans in it)."""
    for name, text in DEFAULTS.items():
        path = tmp_path.joinpath("sys", *name.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def _file(proc: Path, name: str) -> str:
    return proc.joinpath("sys", *name.split(".")).read_text()


def _unvalidated(desired: dict[str, int]) -> SysctlConfig:
    """A config section that skipped validation, as if config loading had not caught it."""
    return SysctlConfig.model_construct(mode="enforce", desired=desired)


def test_check_reads_and_compares_without_writing(proc: Path) -> None:
    report = SysctlPolicy(SysctlConfig(mode="audit", desired=KEEPALIVE), str(proc)).check()
    assert report.exit_code == EXIT_DRIFT
    assert report.writes == ()
    assert _file(proc, "net.ipv4.tcp_keepalive_time") == "7200\n"
    entry = report.entry("net.ipv4.tcp_max_orphans")
    assert entry is not None and entry.status is Status.ABSENT


def test_enforce_writes_drifted_values_and_logs_old_and_new(
    proc: Path, caplog: pytest.LogCaptureFixture
) -> None:
    desired = {**KEEPALIVE, "net.ipv4.tcp_keepalive_probes": 9}  # already right: not written
    with caplog.at_level(logging.WARNING, logger="tcpwatchd.sysctl"):
        report = SysctlPolicy(SysctlConfig(mode="enforce", desired=desired), str(proc)).enforce()
    assert report.exit_code == EXIT_COMPLIANT
    assert [(w.name, w.old, w.new, w.ok) for w in report.writes] == [
        ("net.ipv4.tcp_keepalive_time", 7200, 600, True),
        ("net.ipv4.tcp_keepalive_intvl", 75, 30, True),
    ]
    assert _file(proc, "net.ipv4.tcp_keepalive_time") == "600\n"
    assert _file(proc, "net.ipv4.tcp_keepalive_probes") == "9\n"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "set sysctl net.ipv4.tcp_keepalive_time from 7200 to 600 (enforcing the config)",
        "set sysctl net.ipv4.tcp_keepalive_intvl from 75 to 30 (enforcing the config)",
    ]


def test_enforce_never_touches_report_only_sysctls(proc: Path) -> None:
    SysctlPolicy(SysctlConfig(mode="enforce", desired=KEEPALIVE), str(proc)).enforce()
    for name in ("net.ipv4.tcp_retries2", "net.ipv4.tcp_fin_timeout", "net.core.somaxconn"):
        assert _file(proc, name) == DEFAULTS[name]


def test_drift_reappearing_is_enforced_again(proc: Path) -> None:
    policy = SysctlPolicy(SysctlConfig(mode="enforce", desired=KEEPALIVE), str(proc))
    assert policy.enforce().exit_code == EXIT_COMPLIANT
    assert policy.enforce().writes == ()  # nothing to do while nobody interferes
    proc.joinpath("sys/net/ipv4/tcp_keepalive_time").write_text("7200\n")  # behind our back
    assert policy.check().exit_code == EXIT_DRIFT
    again = policy.enforce()
    assert again.exit_code == EXIT_COMPLIANT
    assert [(w.old, w.new) for w in again.writes] == [(7200, 600)]
    totals = {t.name: (t.succeeded, t.failed) for t in again.write_totals}
    assert totals["net.ipv4.tcp_keepalive_time"] == (2, 0)
    assert totals["net.ipv4.tcp_keepalive_intvl"] == (1, 0)


@pytest.mark.parametrize(
    "bad",
    [
        {"net.ipv4.tcp_keepalive_probes": 500},
        {"net.ipv4.tcp_keepalive_time/../../../kernel": 1},
        {"kernel.panic": 1},
        {"net.ipv4.tcp_keepalive_intvl": -1},
    ],
)
def test_one_bad_entry_means_nothing_is_written(proc: Path, bad: dict[str, int]) -> None:
    report = SysctlPolicy(_unvalidated({**KEEPALIVE, **bad}), str(proc)).enforce()
    assert report.exit_code == EXIT_ERROR
    assert report.writes == ()
    assert len(report.problems) == 1 and report.problems[0].startswith(next(iter(bad)))
    for name in KEEPALIVE:
        assert _file(proc, name) == DEFAULTS[name]


def test_a_desired_sysctl_missing_here_is_an_error_and_not_created(proc: Path) -> None:
    policy = SysctlPolicy(SysctlConfig(mode="enforce", desired={"net.ipv4.tcp_max_orphans": 4096}), str(proc))
    report = policy.enforce()
    assert report.exit_code == EXIT_ERROR and report.writes == ()
    assert "net.ipv4.tcp_max_orphans: not present" in report.error_summary()
    assert not proc.joinpath("sys/net/ipv4/tcp_max_orphans").exists()


def test_unreadable_sysctl_is_reported_not_written_blind(proc: Path) -> None:
    proc.joinpath("sys/net/ipv4/tcp_keepalive_time").write_text("not a number\n")
    report = SysctlPolicy(SysctlConfig(mode="enforce", desired=KEEPALIVE), str(proc)).enforce()
    assert _file(proc, "net.ipv4.tcp_keepalive_time") == "not a number\n"
    assert report.exit_code == EXIT_ERROR
    assert [w.name for w in report.writes] == [
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ]
