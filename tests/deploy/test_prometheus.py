"""The alert and recording rules: valid for promtool, unit-tested, and tied to the metric contract."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.tools import CONTRACT_METRICS, DEPLOY, PROCESS_METRICS, metrics_in, runbook_anchors

RULES = DEPLOY / "prometheus" / "tcpwatchd-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tcpwatchd-rules.test.yml"
RUNBOOK_URL = "https://github.com/tcpwatchd/tcpwatchd/blob/main/docs/runbook.md#"

# What the issue asks an alert for, and the alert that answers it.
REQUIRED_ALERTS = {
    "CLOSE_WAIT leak": "TcpwatchdCloseWaitLeak",
    "phantom connections": "TcpwatchdPhantomConnections",
    "reconnect storm": "TcpwatchdReconnectStorm",
    "keepalive sysctl drift": "TcpwatchdSysctlDrift",
    "stalled receive queues": "TcpwatchdStalledReceive",
    "unresponsive peers": "TcpwatchdUnresponsivePeers",
    "rising RST-on-close rate": "TcpwatchdRstOnCloseRising",
    "tcpwatchd down": "TcpwatchdDown",
    "no tcpwatchd target": "TcpwatchdAbsent",
    "tcpwatchd stale": "TcpwatchdStale",
}


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=RULES.parent)


def test_promtool_accepts_the_rules(promtool: str) -> None:
    done = _run(promtool, "check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    done = _run(promtool, "test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _alert_cases() -> dict[str, tuple[int, int]]:
    """alert name -> (firing cases, quiet cases) in the promtool unit tests."""
    doc = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    cases: dict[str, tuple[int, int]] = {}
    for test in doc["tests"]:
        for case in test.get("alert_rule_test", []):
            firing, quiet = cases.get(case["alertname"], (0, 0))
            if case.get("exp_alerts"):
                firing += 1
            else:
                quiet += 1
            cases[case["alertname"]] = (firing, quiet)
    return cases


@pytest.mark.parametrize("alert", sorted(_alerts()))
def test_every_alert_is_tested_firing_and_not_firing(alert: str) -> None:
    firing, quiet = _alert_cases().get(alert, (0, 0))
    assert firing >= 1, f"{alert}: no promtool case where it fires"
    assert quiet >= 1, f"{alert}: no promtool case where it stays quiet"


@pytest.mark.parametrize(("need", "alert"), sorted(REQUIRED_ALERTS.items()))
def test_the_issue_s_alerts_exist(need: str, alert: str) -> None:
    assert alert in _alerts(), f"no alert for {need}"


@pytest.mark.parametrize("alert", sorted(_alerts()))
def test_alert_has_for_severity_summary_and_runbook(alert: str) -> None:
    rule = _alerts()[alert]
    assert rule.get("for"), "an alert without for: pages on a single bad scrape"
    assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    notes = rule["annotations"]
    assert notes["description"].strip()
    if alert != "TcpwatchdAbsent":  # the one alert about there being no instance at all
        assert "$labels.instance" in notes["summary"]
    if metrics_in(rule["expr"]) & PROCESS_METRICS:
        assert "$labels.process" in notes["summary"]
    url = notes["runbook_url"]
    assert url.startswith(RUNBOOK_URL)
    assert url.removeprefix(RUNBOOK_URL) in runbook_anchors()


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r.get("alert") or r["record"])
def test_rules_read_only_contract_metrics(rule: dict[str, Any]) -> None:
    used = metrics_in(rule["expr"])
    assert used or "up{" in rule["expr"]
    assert used <= CONTRACT_METRICS, used - CONTRACT_METRICS


def test_recording_rules_follow_the_naming_convention() -> None:
    records = [rule["record"] for rule in _rules() if "record" in rule]
    assert records
    for name in records:
        level, metric, operation = name.split(":")
        assert level and operation and metric.startswith("tcpwatchd_")
