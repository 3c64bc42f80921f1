"""`tcpwatchd audit [-c FILE] [--apply] [--json]`: exit 0 compliant, 1 drift, 2 error.

The audit runs whatever `[sysctl] mode` says, even "off": the operator asked for it explicitly (mode only
governs what the daemon does on its own). `--apply` writes the drifted desired values — all of them or, when
any entry of the table is refused, none — and the exit code then describes the state after the writes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tcpwatchd.config import Config
from tcpwatchd.sysctl.audit import SysctlEntry, SysctlReport
from tcpwatchd.sysctl.enforce import SysctlPolicy


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def _duration(seconds: float) -> str:
    """'2h11m15s' for 7875."""
    whole, frac = divmod(round(seconds, 1), 1)
    h, rest = divmod(int(whole), 3600)
    m, s = divmod(rest, 60)
    sec = f"{s + frac:.1f}".removesuffix(".0") + "s"
    return (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + sec


def _status(e: SysctlEntry) -> str:
    return f"{e.status.value} ({e.error})" if e.error else e.status.value


def render_table(report: SysctlReport) -> str:
    """The audit as an aligned table, then the derived times and a verdict line."""
    rows = [("NAME", "CURRENT", "DESIRED", "STATUS")]
    rows += [(e.name, _cell(e.current), _cell(e.desired), _status(e)) for e in report.entries]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]}" for r in rows]
    lines += ["", *_derived_lines(report), _verdict(report)]
    return "\n".join(lines)


def _derived_lines(report: SysctlReport) -> list[str]:
    idle, inflight = report.idle_detection_seconds, report.inflight_detection_seconds
    idle_text = "unknown" if idle is None else f"{idle:g} s ({_duration(idle)})"
    inflight_text = "unknown" if inflight is None else f"{inflight:g} s ({_duration(inflight)})"
    return [
        f"dead peer, idle connection with keepalive: aborted after {idle_text}",
        f"dead peer, data in flight: aborted after {inflight_text} of retransmission",
    ]


def _verdict(report: SysctlReport) -> str:
    if report.errors:
        return f"error: {len(report.errors)} problem(s), see above and stderr"
    if report.drifted:
        return f"drift: {len(report.drifted)} sysctl(s) differ from the config (--apply writes them)"
    return "compliant"


def report_json(report: SysctlReport, mode: str) -> dict[str, Any]:
    """The report for automation: stable keys, values as numbers, null when unknown."""
    return {
        "exit_code": report.exit_code,
        "compliant": report.exit_code == 0,
        "mode": mode,
        "netns": report.netns,
        "sysctls": [
            {"name": e.name, "current": e.current, "desired": e.desired, "status": e.status.value}
            | {"unit": e.unit, "error": e.error or None}
            for e in report.entries
        ],
        "dead_peer_idle_detection_seconds": report.idle_detection_seconds,
        "dead_peer_inflight_detection_seconds": report.inflight_detection_seconds,
        "writes": [
            {"name": w.name, "old": w.old, "new": w.new, "error": w.error or None} for w in report.writes
        ],
        "errors": list(report.errors),
    }


def _print_human(report: SysctlReport, mode: str) -> None:
    ns = report.netns or "unknown"
    note = " (auditing anyway: asked explicitly)" if mode == "off" else ""
    print(f"sysctl audit of network namespace {ns}, [sysctl] mode = {mode}{note}")
    for w in report.writes:
        if w.ok:
            print(f"wrote {w.name}: {w.old} -> {w.new}")
    print(render_table(report))
    for err in report.errors:
        print(f"tcpwatchd audit: {err}", file=sys.stderr)


def audit_command(cfg: Config, apply: bool, as_json: bool, proc_root: str = "/proc") -> int:
    """Audit (and with `apply`, enforce) `cfg.sysctl.desired`; print the result; return the exit code."""
    policy = SysctlPolicy(cfg.sysctl, proc_root)
    report = policy.enforce() if apply else policy.check()
    if as_json:
        print(json.dumps(report_json(report, cfg.sysctl.mode), indent=2))
    else:
        _print_human(report, cfg.sysctl.mode)
    return report.exit_code
