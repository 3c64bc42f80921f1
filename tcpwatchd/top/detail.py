"""The detail screen: the findings of one opened process (or pod), paged, with peer, local, age, rule."""

from __future__ import annotations

from collections.abc import Sequence

from tcpwatchd.top.columns import Column, age, choose, header_line, line
from tcpwatchd.top.document import Finding, Summary
from tcpwatchd.top.frame import Inputs, Line, Style, body_space, fitted, layout, status_line
from tcpwatchd.top.text import fit

DETAIL_KEYS = "q quit  Esc back  j/k scroll  n/p page"


def finding_columns(findings: Sequence[Finding]) -> list[Column[Finding]]:
    kind_w = min(max([len(f.kind) for f in findings] + [4]), 17)
    return [
        Column("KIND", kind_w, 0, lambda f: f.kind, right=False),
        Column("AGE", 6, 1, lambda f: age(f.age_seconds)),
        # 21 columns hold any IPv4 address:port; an IPv6 one is cut with a visible mark.
        Column("PEER", 21, 2, lambda f: f.remote or f.peer, right=False),
        Column("LOCAL", 21, 3, lambda f: f.local, right=False),
        Column("PID", 7, 6, lambda f: str(f.pid) if f.pid else "-"),
        Column("RULE", 12, 5, lambda f: f.rule or "-", right=False),
        Column("DETAILS", 0, 4, details_text, right=False, flex=True),
    ]


def details_text(f: Finding) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(f.details.items()))


def target_findings(inp: Inputs) -> list[Finding]:
    """The detail document's findings of exactly the opened row (the query's glob matched it already)."""
    if inp.detail is None or inp.state.target is None:
        return []
    process, namespace, pod, container = inp.state.target
    return [
        f
        for f in inp.detail.findings
        if (f.process, f.namespace, f.pod) == (process, namespace, pod)
        and (not container or f.container == container)
        and (not inp.state.kind or f.kind == inp.state.kind)
    ]


def _target_summary(inp: Inputs) -> Summary | None:
    if inp.doc is None:
        return None
    for s in (*inp.doc.processes, *inp.doc.pods):
        if s.key == inp.state.target:
            return s
    return None


def _detail_title(inp: Inputs) -> str:
    target = inp.state.target or ("", "", "", "")
    name = target[0] or f"{target[1]}/{target[2]}"
    where = f" in {target[1]}/{target[2]}" if target[0] and target[2] else ""
    s = _target_summary(inp)
    counts = ""
    if s is not None:
        by_kind = ", ".join(f"{k} {n}" for k, n in sorted(s.findings.items()) if n)
        counts = f" · {s.sockets_total} sockets · {s.findings_total} findings" + (
            f" ({by_kind})" if by_kind else ""
        )
    page = ""
    if inp.detail is not None:
        page = f" · page {inp.detail.page.number}/{max(inp.detail.page.total_pages, 1)}"
    return f"{name}{where}{counts}{page}"


def render_detail(inp: Inputs, width: int, height: int) -> list[Line]:
    findings = target_findings(inp)
    chosen = choose(finding_columns(findings), width)
    space = body_space(height)
    first = min(inp.state.scroll, max(len(findings) - space, 0))
    style = Style.STALE if inp.status.error else Style.NORMAL
    body = [Line(line(chosen, f, width, inp.ascii_only), style) for f in findings[first : first + space]]
    if inp.detail is None:
        body = [Line(fit("loading findings…" if not inp.ascii_only else "loading findings...", width))]
    elif not findings:
        body = [Line(fit("(no findings listed for it on this page)", width))]
    status = (
        status_line(inp)
        if inp.status.error
        else Line(f"findings {first + 1}-{first + len(body)} of {len(findings)} listed")
    )
    top = [
        Line(fit(_detail_title(inp), width, ascii_only=inp.ascii_only), Style.TITLE),
        fitted(status, width, inp.ascii_only),
        Line(header_line(chosen, width), Style.HEADER),
    ]
    return layout(top, body, Line(fit(DETAIL_KEYS, width), Style.FOOTER), width, height)
