"""`tcpwatchd snapshot`: one poll now, printed per process (sockets by state) with every finding."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from tcpwatchd.config import Config
from tcpwatchd.model import NOBODY, STATE_LABELS, Owner, ProcessLabels
from tcpwatchd.poller import Poller, PollResult
from tcpwatchd.snapshot import Snapshot, row_labels


@dataclass(slots=True)
class ProcessRow:
    name: str
    pid: int
    user: str
    unit: str
    container: str
    sockets: Counter[str] = field(default_factory=Counter)
    where: ProcessLabels = NOBODY  # namespace, pod and container names ("" outside a pod)

    @property
    def total(self) -> int:
        return sum(self.sockets.values())


def process_rows(snap: Snapshot) -> list[ProcessRow]:
    """Sockets by state per owning process; sockets with no owner are one row with pid 0 (one per pod,
    when some are in a pod's network namespace)."""
    rows: dict[tuple[int, ProcessLabels], ProcessRow] = {}
    unowned = Owner(pid=0, name="", start_time=0.0, user="")
    for sock, where in zip(snap.sockets, row_labels(snap), strict=True):
        owner = snap.owner_of(sock) or unowned
        row = rows.get((owner.pid, where))
        if row is None:
            row = rows[(owner.pid, where)] = ProcessRow(
                owner.name, owner.pid, owner.user, owner.unit, owner.container, where=where
            )
        row.sockets[sock.state.label] += 1
    return sorted(rows.values(), key=lambda r: (-r.total, r.name, r.pid))


def snapshot_command(cfg: Config, as_json: bool, interval: float = 0.0, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    poller = Poller(cfg)
    try:
        result = poller.poll()
        if interval > 0:
            time.sleep(interval)
            result = poller.poll()
    finally:
        poller.close()
    if as_json:
        json.dump(to_json(result), out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        out.write(render_table(result))
    return 0


def to_json(result: PollResult) -> dict[str, Any]:
    snap = result.snapshot
    return {
        "taken_at": snap.taken_at,
        "source": snap.source,
        "sockets": len(snap.sockets),
        "by_state": dict(Counter(s.state.label for s in snap.sockets)),
        "processes": [
            {
                "name": r.name,
                "pid": r.pid,
                "user": r.user,
                "unit": r.unit,
                "container": r.container,
                "namespace": r.where.namespace,
                "pod": r.where.pod,
                "container_name": r.where.container,
                "sockets": dict(r.sockets),
            }
            for r in process_rows(snap)
        ],
        "findings": [f.to_json() for f in result.report.findings],
        "sources": [asdict(s) for s in snap.sources]
        + ([asdict(result.sysctl_status)] if result.sysctl_status else []),
        "attribution": asdict(snap.attribution) | {"partial": snap.attribution.partial},
        "poll_duration_seconds": result.duration_seconds,
    }


def _safe(text: str) -> str:
    """Names are hostile: keep one row per process whatever bytes the name holds."""
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text


def render_table(result: PollResult) -> str:
    snap = result.snapshot
    rows = process_rows(snap)
    present = [s for s in STATE_LABELS if any(r.sockets.get(s) for r in rows)]
    pods = any(r.where.namespace or r.where.pod or r.where.container for r in rows)
    where = ["NAMESPACE", "POD", "CONTAINER"] if pods else []
    header = ["PROCESS", "PID", "UNIT", *where, *[s.upper() for s in present], "TOTAL"]
    table = [header]
    for r in rows:
        name = _safe(r.name) if r.pid else "(no process)"
        unit = _safe(r.unit or r.container) or "-"
        names = [_safe(v) or "-" for v in r.where[1:]] if pods else []
        counts = [str(r.sockets.get(s, 0)) for s in present]
        table.append([name, str(r.pid or "-"), unit, *names, *counts, str(r.total)])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.append("")
    lines.append(
        f"{len(snap.sockets)} sockets via {snap.source}, {len(rows)} owners, "
        + (f"{len(snap.namespaces)} other network namespaces, " if snap.namespaces else "")
        + f"poll {result.duration_seconds * 1000:.0f} ms"
        + (
            f" (attribution partial: {snap.attribution.processes_denied} processes unreadable)"
            if snap.attribution.partial
            else ""
        )
    )
    lines += _findings_lines(result)
    return "\n".join(lines) + "\n"


def _findings_lines(result: PollResult) -> list[str]:
    findings = result.report.findings
    if not findings:
        return ["", "No findings."]
    by_kind: dict[str, list[str]] = defaultdict(list)
    for f in findings:
        by_kind[str(f.kind)].append("  " + _safe(f.describe()))
    lines = ["", f"{len(findings)} findings:"]
    for kind in sorted(by_kind):
        lines.append(f"{kind} ({len(by_kind[kind])}):")
        lines += by_kind[kind]
    return lines
