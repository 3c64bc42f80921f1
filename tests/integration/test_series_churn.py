"""A local user churning process names cannot grow /metrics: at most `max_process_label_values` names
per family keep their own series, the rest count under `~other` (tests/unit/test_series_budget.py has
the grace period and the stability rules)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_daemon import config, scrape, start
from tests.support.netns import REPO, NetNS, stop, wait_line, wait_until

pytestmark = pytest.mark.integration

CAP = 30


def process_values(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if "process" in s.labels:
                out.setdefault(family.name, set()).add(s.labels["process"])
    return out


def _polled(ns: NetNS) -> bool:
    try:
        return "tcpwatchd_sockets" in scrape(ns)
    except subprocess.CalledProcessError:
        return False


def test_an_unprivileged_name_churn_keeps_metrics_bounded(tmp_path: Path) -> None:
    cfg = config(tmp_path, f"[exporter]\nmax_process_label_values = {CAP}\n")
    with NetNS() as ns:
        daemon = start(ns, cfg)
        wait_until(lambda: _polled(ns), timeout=30, what="a first poll")
        churn = ns.python(str(REPO / "tests/support/name_churn.py"), "1500", "150")
        try:
            assert "uid=65534" in wait_line(churn, "READY", timeout=30)
            sizes: list[int] = []
            seen: set[str] = set()
            for _ in range(4):  # while the churn runs (10 s)
                time.sleep(2)
                text = scrape(ns)
                sizes.append(len(text))
                for family, values in process_values(text).items():
                    assert len(values) <= CAP + 2, (family, len(values))  # + "" and "~other"
                    seen |= values
            assert wait_line(churn, "DONE", timeout=60).startswith("DONE 1500")
            text = scrape(ns)
            values = process_values(text)
            assert len(values["tcpwatchd_connections_opened"]) <= CAP + 2
            assert "~other" in values["tcpwatchd_connections_opened"]
            capped = [ln for ln in text.splitlines() if ln.startswith("tcpwatchd_label_values_capped_total ")]
            assert capped and float(capped[0].split()[1]) > 500, capped
            assert len(seen) < 3 * CAP  # a few names change hands; not one series per name ever seen
            assert len(text) < 3 * min(sizes), (len(text), sizes)
            assert daemon.poll() is None
        finally:
            stop(churn)
            stop(daemon)
