"""The Grafana dashboard: importable structure, one datasource variable, contract metrics, valid PromQL.

Whether each query returns data from a real Prometheus is the end-to-end test's job; here every
expression is at least parsed by promtool.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import CONTRACT_METRICS, DEPLOY, metrics_in, runbook_anchors

DASHBOARD = DEPLOY / "grafana" / "tcpwatchd.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's variables, replaced by values Prometheus would accept, to parse the expressions.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$instance": ".*",
    "$process": ".*",
    "$namespace": ".*",
    "$pod": ".*",
}

# What the issue asks the dashboard to show, and an expression fragment that shows it.
REQUIRED_VIEWS = {
    "CLOSE_WAIT buildup per process": 'sum by (process) (tcpwatchd_sockets{state="close_wait"',
    "oldest CLOSE_WAIT age": "tcpwatchd_close_wait_oldest_age_seconds",
    "phantoms": "tcpwatchd_phantom_connections",
    "suspects": "tcpwatchd_idle_suspect_connections",
    "storms": "tcpwatchd_reconnect_storm_peers",
    "keepalive-off connections": "tcpwatchd_keepalive_off_connections",
    "stalled receives": "tcpwatchd_stalled_receive_connections",
    "unresponsive peers": "tcpwatchd_unresponsive_peer_connections",
    "sysctl compliance": "tcpwatchd_sysctl_compliant",
    "RST-on-close rate": 'rate(tcpwatchd_kernel_tcp_aborts_total{reason="on_close"',
    "poll duration": "tcpwatchd_poll_duration_seconds_bucket",
    "source health": "tcpwatchd_source_success",
}


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _panels() -> list[dict[str, Any]]:
    """Every panel that queries (rows are only headings), including panels nested in collapsed rows."""
    out = []
    for panel in _dashboard()["panels"]:
        out += [p for p in panel.get("panels", [])]
        if panel["type"] != "row":
            out.append(panel)
    return out


def _exprs() -> list[str]:
    return [t["expr"] for p in _panels() for t in p["targets"]]


def _variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in _dashboard()["templating"]["list"]}


def test_dashboard_identity() -> None:
    d = _dashboard()
    assert d["uid"] == "tcpwatchd"
    assert d["title"]
    assert isinstance(d["schemaVersion"], int)
    assert "__inputs" not in d  # importable as is: the datasource is a variable, not an import input


def test_datasource_instance_and_process_variables() -> None:
    variables = _variables()
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name, metric in (("instance", "tcpwatchd_build_info"), ("process", "tcpwatchd_sockets")):
        var = variables[name]
        assert var["datasource"] == DATASOURCE
        assert var["multi"] and var["includeAll"]
        assert var["allValue"] == ".*"  # also matches process="", the unowned sockets
        assert re.fullmatch(rf"label_values\({metric}\b.*, {name}\)", var["query"]["query"])


def test_pod_and_namespace_variables_and_per_pod_panels() -> None:
    variables = _variables()
    for name in ("namespace", "pod"):
        var = variables[name]
        assert var["multi"] and var["includeAll"] and var["allValue"] == ".*"  # "" (host processes) too
        assert re.fullmatch(rf"label_values\(tcpwatchd_sockets\b.*, {name}\)", var["query"]["query"])
    per_pod = [e for e in _exprs() if "by (namespace, pod" in e]
    assert any("tcpwatchd_sockets" in e for e in per_pod)
    assert any("tcpwatchd_close_wait_leaked_sockets" in e for e in per_pod)


@pytest.mark.parametrize("panel", _panels(), ids=lambda p: p["title"])
def test_every_panel_queries_the_datasource_variable(panel: dict[str, Any]) -> None:
    assert panel["datasource"] == DATASOURCE
    assert panel["targets"]
    for target in panel["targets"]:
        assert target["datasource"] == DATASOURCE
        assert target["expr"].strip()
        assert metrics_in(target["expr"]) <= CONTRACT_METRICS
        assert "$instance" in target["expr"]


@pytest.mark.parametrize("panel", _panels(), ids=lambda p: p["title"])
def test_panels_describe_themselves_and_link_to_existing_runbook_sections(panel: dict[str, Any]) -> None:
    assert panel["description"].strip()
    for link in panel.get("links", []):
        _, _, anchor = link["url"].partition("#")
        assert anchor in runbook_anchors()


def test_panel_ids_unique_and_grid_without_overlap() -> None:
    panels = _dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0
        assert g["x"] + g["w"] <= 24
        mine = {(g["x"] + dx, g["y"] + dy) for dx in range(g["w"]) for dy in range(g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine


@pytest.mark.parametrize(("view", "fragment"), sorted(REQUIRED_VIEWS.items()))
def test_dashboard_shows(view: str, fragment: str) -> None:
    assert any(fragment in expr for expr in _exprs()), f"no panel shows {view}"


def _as_prometheus(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def _selector_of(label_values_query: str) -> str:
    """'label_values(up{job="x"}, instance)' -> 'up{job="x"}'."""
    inner = label_values_query.removeprefix("label_values(").removesuffix(")")
    return inner.rsplit(",", 1)[0]


def test_every_expression_parses(promtool: str, tmp_path: Path) -> None:
    exprs = _exprs() + [
        _selector_of(v["query"]["query"]) for n, v in _variables().items() if n != "datasource"
    ]
    rules = [{"record": f"dashboard_expr_{i}", "expr": _as_prometheus(e)} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
