"""Results: one frozen record per matrix point, and the Markdown tables printed at the end."""

from __future__ import annotations

import math
from dataclasses import dataclass

from population import Spec
from worst import KINDS

# Targets (issue 2): cold <= 0.2 x ss -tanpoi and <= 0.4 x psutil; steady <= node_exporter tcpstat scrape.
COLD_VS_SS, COLD_VS_PSUTIL, STEADY_VS_SCRAPE = 0.2, 0.4, 1.0
WORST_COLD_VS_SS = 0.3  # issue 12: the worst-case rows' first poll


@dataclass(frozen=True, slots=True)
class Part:
    """One slice of a steady poll as tcpwatchd reports it: `source:sockdiag`, `detect:phantom`, ..."""

    name: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Point:
    spec: Spec
    rounds: int
    build_seconds: float
    sockets: int  # what `ss -tanH` counted before measuring
    seen: int  # what tcpwatchd's cold poll returned
    cold: float  # medians across rounds, seconds
    steady: float
    ss: float
    psutil: float
    scrape: float
    rss_mb: float  # the largest peak RSS (VmHWM) of the tcpwatchd workers
    findings: int  # findings in a steady poll
    gc_steady: float  # seconds of cyclic GC inside one steady poll (median)
    parts: tuple[Part, ...]  # medians across rounds
    idle_rss_mb: float = math.nan  # peak RSS after the imports and the Poller, before the first poll
    cpu_steady: float = math.nan  # CPU seconds (user + system, all threads) of one steady poll
    kinds: tuple[tuple[str, int], ...] = ()  # findings counted in a steady poll, by kind (medians)

    @property
    def worst(self) -> bool:
        """The worst-case population (population.py, worst.py): every detector has mass findings."""
        return self.spec.worst

    @property
    def rss_target_mb(self) -> float:
        """Issue 12: 40 MB at 2k sockets, 100 MB at 100k, 250 MB at 500k."""
        if self.spec.connections <= 1000:
            return 40.0
        return 100.0 if self.spec.connections <= 50_000 else 250.0

    @property
    def cold_vs_ss_target(self) -> float:
        return WORST_COLD_VS_SS if self.worst else COLD_VS_SS


def _mark(value: float, limit: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.2f} {'ok' if value <= limit else 'over'}"


def _s(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds:.3f} s"


def render(points: list[Point]) -> str:
    rows = [
        "| connections | procs | sockets | rounds | cold poll | steady poll | `ss -tanpoi` | psutil "
        "| node_exporter tcpstat | peak RSS | cold/ss (≤0.2, worst ≤0.3) | cold/psutil (≤0.4) "
        "| steady/node_exporter (≤1) | RSS |",
        "|" + "---:|" * 14,
    ]
    for p in points:
        rss = "n/a" if math.isnan(p.rss_mb) else f"<{p.rss_target_mb:.0f} MB"
        if not math.isnan(p.rss_mb):
            rss += " ok" if p.rss_mb < p.rss_target_mb else " over"
        rows.append(
            f"| {_n(p)} | {p.spec.processes} | {p.sockets} | {p.rounds} | {_s(p.cold)} "
            f"| {_s(p.steady)} | {_s(p.ss)} | {_s(p.psutil)} | {_s(p.scrape)} | {p.rss_mb:.0f} MB "
            f"| {_mark(p.cold / p.ss, p.cold_vs_ss_target)} | {_mark(p.cold / p.psutil, COLD_VS_PSUTIL)} "
            f"| {_mark(p.steady / p.scrape, STEADY_VS_SCRAPE)} | {rss} |"
        )
    return "\n".join(rows)


def render_breakdown(points: list[Point]) -> str:
    """Where a steady poll goes: sources and detectors as timed by tcpwatchd; `rest` is tracker + report."""
    rows = [
        "| connections | procs | steady poll | sockdiag | owners | detectors | slowest detector | findings "
        "| rest | of all this, GC |",
        "|" + "---:|" * 9 + "---:|",
    ]
    for p in points:
        if not p.parts:
            continue
        by = {part.name: part.seconds for part in p.parts}
        detectors = [part for part in p.parts if part.name.startswith("detect:")]
        slowest = max(detectors, key=lambda part: part.seconds, default=Part("-", math.nan))
        spent = sum(part.seconds for part in p.parts)
        rows.append(
            f"| {_n(p)} | {p.spec.processes} | {_s(p.steady)} "
            f"| {_s(by.get('source:sockdiag', math.nan))} | {_s(by.get('source:owners', math.nan))} "
            f"| {_s(sum(d.seconds for d in detectors))} | {slowest.name[7:]} {_s(slowest.seconds)} "
            f"| {p.findings} | {_s(max(0.0, p.steady - spent))} | {_s(p.gc_steady)} |"
        )
    return "\n".join(rows)


def _n(p: Point) -> str:
    return f"{p.spec.connections}{' worst' if p.worst else ''}"


def render_resources(points: list[Point], interval: float = 10.0) -> str:
    """Bytes per socket beyond the idle process, and the share of one core at `interval` (issue 12)."""
    rows = [
        "| connections | procs | sockets | idle RSS | peak RSS | bytes/socket | CPU/steady poll "
        "| core share at 10 s |",
        "|" + "---:|" * 8,
    ]
    for p in points:
        per = (p.rss_mb - p.idle_rss_mb) * 1024 * 1024 / max(1, p.sockets)
        share = 100.0 * p.cpu_steady / interval
        rows.append(
            f"| {_n(p)} | {p.spec.processes} | {p.sockets} | {p.idle_rss_mb:.0f} MB | {p.rss_mb:.0f} MB "
            f"| {per:.0f} | {_s(p.cpu_steady)} | {share:.2f} % |"
        )
    return "\n".join(rows)


def render_kinds(points: list[Point]) -> str:
    """Every finding a steady poll counted (the gauges' total), by kind; `listed` is what it named."""
    kinds = list(KINDS) + sorted({k for p in points for k, _ in p.kinds} - set(KINDS))
    rows = [
        "| connections | procs | " + " | ".join(kinds) + " | listed |",
        "|" + "---:|" * (len(kinds) + 3),
    ]
    for p in points:
        counts = dict(p.kinds)
        cells = " | ".join(str(counts.get(kind, 0)) for kind in kinds)
        rows.append(f"| {_n(p)} | {p.spec.processes} | {cells} | {p.findings} |")
    return "\n".join(rows)
