"""`tcpwatchd audit` on a fake /proc/sys tree: exit codes, table, JSON, --apply, mode off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tcpwatchd.config import Config, SysctlConfig
from tcpwatchd.sysctl.cli import audit_command, render_table
from tcpwatchd.sysctl.enforce import SysctlPolicy

DEFAULTS = {
    "net.ipv4.tcp_keepalive_time": "7200\n",
    "net.ipv4.tcp_keepalive_intvl": "75\n",
    "net.ipv4.tcp_keepalive_probes": "9\n",
    "net.ipv4.tcp_retries2": "15\n",
}


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    for name, text in DEFAULTS.items():
        path = tmp_path.joinpath("sys", *name.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def _cfg(mode: str = "audit", desired: dict[str, int] | None = None) -> Config:
    section = SysctlConfig(mode=mode, desired=desired) if desired is not None else SysctlConfig(mode=mode)
    return Config(sysctl=section)


def test_drift_exits_1_and_prints_a_table(proc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_command(_cfg(), apply=False, as_json=False, proc_root=str(proc)) == 1
    out = capsys.readouterr().out
    assert "net.ipv4.tcp_keepalive_time       7200      600  drift" in out
    assert "net.ipv4.tcp_retries2               15        -  report-only" in out
    assert "aborted after 7875 s (2h11m15s)" in out
    assert "aborted after 924.6 s (15m24.6s)" in out
    assert out.rstrip().endswith("drift: 3 sysctl(s) differ from the config (--apply writes them)")


def test_apply_writes_and_exits_0(proc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_command(_cfg(), apply=True, as_json=False, proc_root=str(proc)) == 0
    out = capsys.readouterr().out
    assert "wrote net.ipv4.tcp_keepalive_time: 7200 -> 600" in out
    assert proc.joinpath("sys/net/ipv4/tcp_keepalive_time").read_text() == "600\n"
    assert audit_command(_cfg(), apply=False, as_json=False, proc_root=str(proc)) == 0
    assert capsys.readouterr().out.rstrip().endswith("compliant")


def test_json(proc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_command(_cfg(), apply=False, as_json=True, proc_root=str(proc)) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == 1 and doc["compliant"] is False and doc["mode"] == "audit"
    by_name = {s["name"]: s for s in doc["sysctls"]}
    assert by_name["net.ipv4.tcp_keepalive_time"] == {
        "name": "net.ipv4.tcp_keepalive_time",
        "current": 7200,
        "desired": 600,
        "status": "drift",
        "unit": "seconds",
        "error": None,
    }
    assert by_name["net.core.somaxconn"]["status"] == "absent"
    assert doc["dead_peer_idle_detection_seconds"] == 7875
    assert doc["writes"] == [] and doc["errors"] == []


def test_mode_off_still_audits_when_asked(proc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_command(_cfg(mode="off"), apply=False, as_json=False, proc_root=str(proc)) == 1
    assert "mode = off (auditing anyway: asked explicitly)" in capsys.readouterr().out


def test_invalid_desired_exits_2_and_writes_nothing(proc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = SysctlConfig.model_construct(
        mode="audit", desired={"net.ipv4.tcp_keepalive_time": 600, "x/../y": 1}
    )
    cfg = Config.model_construct(sysctl=bad)
    assert audit_command(cfg, apply=True, as_json=False, proc_root=str(proc)) == 2
    captured = capsys.readouterr()
    assert "x/../y: not a sysctl name" in captured.err
    assert proc.joinpath("sys/net/ipv4/tcp_keepalive_time").read_text() == "7200\n"


def test_unreadable_sysctl_exits_2(proc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc.joinpath("sys/net/ipv4/tcp_keepalive_intvl").write_text("\x1b[2J\n")
    assert audit_command(_cfg(), apply=False, as_json=False, proc_root=str(proc)) == 2
    captured = capsys.readouterr()
    assert "net.ipv4.tcp_keepalive_intvl: cannot parse" in captured.err
    assert "\x1b" not in captured.out + captured.err


def test_table_with_no_desired_values(proc: Path) -> None:
    report = SysctlPolicy(SysctlConfig(mode="audit", desired={}), str(proc)).check()
    table = render_table(report)
    assert table.splitlines()[0].split() == ["NAME", "CURRENT", "DESIRED", "STATUS"]
    assert table.rstrip().endswith("compliant")
