"""The real tcpwatchd pipeline, polled on command inside a test's network namespace.

    python -m tests.support.detect_driver '{"detect": {...}, "daemon": {"source": "procnet"}}'

(`"facts_refresh_seconds": 0.5` beside the sections re-reads process facts that often instead of 30 s.)

Builds a `Poller` (and the daemon's `Announcer`) from the given config sections, prints `READY`, then
on each `poll` line from stdin polls once and prints one `REPORT {json}` line: the report's findings,
per-process figures, the detector gauges as a scrape would render them, the lines the announcer logged,
and the sockets seen. History accumulates across polls, as in the daemon. Ends at EOF on stdin.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from prometheus_client.core import Metric

from tcpwatchd.config import Config
from tcpwatchd.model import Socket
from tcpwatchd.outputs.announce import FINDING_LOGGER, Announcer
from tcpwatchd.outputs.detector_metrics import detector_metrics
from tcpwatchd.poller import Poller, PollResult
from tcpwatchd.snapshot import Snapshot


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "tcpwatchd_fields", {})
        self.lines.append({"message": record.getMessage(), "fields": fields})


def _gauges(metrics: list[Metric]) -> dict[str, dict[str, float]]:
    """metric name -> label value (process or detector, '' when unlabelled) -> value."""
    out: dict[str, dict[str, float]] = {}
    for m in metrics:
        for sample in m.samples:
            label = next(iter(sample.labels.values()), "")
            out.setdefault(sample.name, {})[label] = sample.value
    return out


def _process(snap: Snapshot, sock: Socket) -> str:
    owner = snap.owner_of(sock)
    return owner.name if owner else ""


def _view(result: PollResult, logged: list[dict[str, Any]]) -> dict[str, Any]:
    snap, report = result.snapshot, result.report
    return {
        "at": snap.monotonic,
        "source": snap.source,
        "findings": [f.to_json() for f in report.findings],
        "processes": {p.process: {str(k): n for k, n in p.counts.items()} for p in report.processes},
        "degraded": {r.name: r.degraded for r in report.degraded},
        "failed": {r.name: r.error for r in report.detectors if not r.ok},
        "metrics": _gauges(detector_metrics(report)),
        "logged": logged,
        "counters": dict(snap.kernel_counters),
        "sockets": [
            {
                "local": s.local,
                "remote": s.remote,
                "state": s.state.label,
                "timer": s.timer.name,
                "rqueue": s.rqueue,
                "process": _process(snap, s),
            }
            for s in snap.sockets
        ],
    }


def main() -> None:
    overrides = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    # A detector's test judges its own namespace: other tests' namespaces on this machine stay out of it.
    overrides.setdefault("namespaces", {"watch": "own"})
    refresh = overrides.pop("facts_refresh_seconds", None)
    if refresh is not None:  # the default re-reads process facts every 30 s; a test cannot wait that long
        overrides.setdefault("daemon", {})["process_facts_refresh_seconds"] = float(refresh)
    cfg = Config.model_validate(overrides)
    captured = Captured()
    finding_log = logging.getLogger(FINDING_LOGGER)
    finding_log.addHandler(captured)
    finding_log.setLevel(logging.INFO)
    finding_log.propagate = False
    poller, announcer = Poller(cfg), Announcer()
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip() != "poll":
            continue
        result = poller.poll()
        announcer.announce(result.report)  # as the daemon does after each poll
        view = _view(result, captured.lines)
        captured.lines = []
        print("REPORT " + json.dumps(view, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
