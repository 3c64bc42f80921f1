"""The Grafana dashboard's queries as Grafana would send them to Prometheus, and what a panel must show.

Grafana interpolates its variables before the query leaves: a multi-value or include-all variable is
regex-escaped for Prometheus (`prometheusRegularEscape` in Grafana's Prometheus datasource: `.` becomes
`\\\\.` in the query text, a regex `\\.` once PromQL has unquoted it).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Grafana's built-in intervals. $__rate_interval is at least four scrape intervals; 5m keeps every event
# of a test's scene (the RST it provoked once) inside the window for as long as the test may run.
INTERVALS = {"$__rate_interval": "5m", "$__interval": "15s", "$__range": "5m"}
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}


@dataclass(frozen=True, slots=True)
class Target:
    panel: str
    ref: str
    expr: str
    instant: bool  # a table's instant query; time series panels send range queries

    @property
    def id(self) -> str:
        return f"{self.panel}/{self.ref}"


def targets(dashboard: Path) -> list[Target]:
    """Every query of every panel, including panels nested in collapsed rows."""
    doc = json.loads(dashboard.read_text(encoding="utf-8"))
    panels: list[dict[str, Any]] = []
    for panel in doc["panels"]:
        panels += panel.get("panels", [])
        if panel["type"] != "row":
            panels.append(panel)
    return [
        Target(p["title"], t["refId"], t["expr"], bool(t.get("instant")) and not t.get("range"))
        for p in panels
        for t in p["targets"]
    ]


def variable_queries(dashboard: Path) -> dict[str, str]:
    """name -> query of each query variable (the datasource variable is not a query)."""
    doc = json.loads(dashboard.read_text(encoding="utf-8"))
    return {v["name"]: v["query"]["query"] for v in doc["templating"]["list"] if v["type"] == "query"}


def regex_value(value: str) -> str:
    """A variable's value as Grafana puts it into a PromQL regex string: '1.2' -> '1\\\\.2'."""
    return re.escape(value).replace("\\", "\\\\")


def interpolate(expr: str, variables: Mapping[str, str]) -> str:
    """`expr` with Grafana's intervals and the given variables ($name and ${name}) replaced."""
    for name, value in INTERVALS.items():
        expr = expr.replace(name, value)
    for name, value in variables.items():
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    if "$" in expr:
        raise ValueError(f"a variable is left in {expr}")
    return expr


def label_values_parts(query: str) -> tuple[str, str]:
    """'label_values(up{job="x"}, instance)' -> ('up{job="x"}', 'instance')."""
    inner = query.removeprefix("label_values(").removesuffix(")")
    selector, label = inner.rsplit(",", 1)
    return selector.strip(), label.strip()


@dataclass(frozen=True, slots=True)
class Shows:
    """What a query must return: a series whose labels include `labels`, its value `compare` `than`."""

    compare: str
    than: float
    labels: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        where = ",".join(f'{k}="{v}"' for k, v in self.labels)
        return f"{{{where}}} {self.compare} {self.than:g}"

    def met_by(self, value: float, labels: Mapping[str, str]) -> bool:
        return dict(self.labels).items() <= labels.items() and _OPS[self.compare](value, self.than)


def shows(condition: str, **labels: str) -> Shows:
    """shows("> 0", process="cw-leaky"): some series of that process above 0."""
    compare, than = condition.split()
    assert compare in _OPS, condition
    return Shows(compare, float(than), tuple(sorted(labels.items())))
