"""The screen as lines of text for a given width and height: no terminal, every string sanitized.

Each line is exactly `width` columns (never more: a wide character that would straddle the edge is
replaced by a space) and there are never more than `height` lines.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tcpwatchd.top import model
from tcpwatchd.top.columns import Column, age, choose, count, header_line, line
from tcpwatchd.top.document import Document, Finding, Summary
from tcpwatchd.top.state import Context, State, View, selected_index
from tcpwatchd.top.text import fit
from tcpwatchd.top.trends import Trends, trend_text


class Style(enum.Enum):
    NORMAL = "normal"
    TITLE = "title"
    HEADER = "header"
    SELECTED = "selected"
    STALE = "stale"
    BANNER = "banner"
    FOOTER = "footer"


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    style: Style = Style.NORMAL


@dataclass(frozen=True, slots=True)
class Status:
    source: str  # what top reads: the URL, or "local poll"
    error: str = ""  # why the last fetch failed; "" when it worked
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class Inputs:
    state: State
    doc: Document | None  # the list's last document
    detail: Document | None  # the current detail query's document, None while it loads
    trends: Trends
    status: Status
    ascii_only: bool = False


LIST_KEYS = "q quit  j/k move  Enter open  / filter  K kind  s sort  p pods  Esc clear"
DETAIL_KEYS = "q quit  Esc back  j/k scroll  n/p page"
TREND_WIDTH = 9


def _count_of(field: str, key: str) -> Callable[[Summary], str]:
    """The cell of one socket state or one finding kind."""
    if field == "sockets":
        return lambda r: count(r.sockets.get(key, 0))
    return lambda r: count(r.findings.get(key, 0))


def process_columns(inp: Inputs, rows: Sequence[Summary]) -> list[Column[Summary]]:
    kinds = [k for k in model.kinds_seen([inp.doc]) if any(r.findings.get(k) for r in rows)]
    showing_pods = inp.state.pods
    cols: list[Column[Summary]] = [
        Column("POD" if showing_pods else "PROCESS", 8, 0, model.label, right=False, flex=True)
    ]
    if not showing_pods and any(r.pod for r in rows):
        cols.append(Column("POD", 16, 6, lambda r: f"{r.namespace}/{r.pod}" if r.pod else "", right=False))
    for i, (header, state_label) in enumerate(model.STATE_COLUMNS):
        cols.append(Column(header, 5, (4, 3, 7, 8)[i], _count_of("sockets", state_label)))
    cols.append(Column("OTH", 5, 9, lambda r: count(model.other_sockets(r))))
    cols.append(Column("FIND", 5, 1, lambda r: count(r.findings_total)))
    for k in kinds:
        cols.append(Column(model.kind_header(k), 4, 5, _count_of("findings", k)))
    cols.append(Column("CWAGE", 6, 2, lambda r: age(r.close_wait_oldest_age_seconds)))
    trend = lambda r: trend_text(inp.trends.samples(r.key), TREND_WIDTH, inp.ascii_only)  # noqa: E731
    cols.append(Column("TREND", TREND_WIDTH, 6, trend, right=False))
    return cols


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


def list_rows(inp: Inputs) -> list[Summary]:
    if inp.doc is None:
        return []
    s = inp.state
    return model.visible_rows(inp.doc, s.pods, s.name_filter, s.kind, s.sort)


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


def _when(taken_at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(taken_at)) if taken_at > 0 else "?"


def _title(inp: Inputs, rows: int) -> str:
    doc = inp.doc
    if doc is None:
        return f"tcpwatchd top · {inp.status.source} · waiting for the first poll"
    p = doc.poll
    stale = " [stale]" if inp.status.error else ""
    what = "pods" if inp.state.pods else "processes"
    return (
        f"tcpwatchd top · {inp.status.source} · poll #{p.number} at {_when(p.taken_at)}{stale}"
        f" ({p.duration_seconds:.2f}s, every {p.interval_seconds:g}s) · {rows} {what}"
    )


def _status(inp: Inputs) -> Line:
    st, s = inp.status, inp.state
    if st.error:
        retry = f", retrying in {max(round(st.retry_in or 0), 0)}s" if st.retry_in is not None else ""
        return Line(f"{st.error}{retry}", Style.BANNER)
    parts = [f"sort: {s.sort.value}"]
    if s.editing:
        parts.insert(0, f"filter: {s.name_filter}_ (Enter keep, Esc cancel)")
    elif s.name_filter:
        parts.insert(0, f"filter: {s.name_filter}")
    if s.kind:
        parts.insert(0, f"kind: {s.kind}")
    if inp.doc is not None and inp.doc.pods and not s.pods:
        parts.append(f"pods: {len(inp.doc.pods)} (p)")
    return Line("  ".join(parts))


def _layout(top: list[Line], body: list[Line], footer: Line, width: int, height: int) -> list[Line]:
    """Title, status, header, body, footer last; short screens drop the footer, the title, the header."""
    bottom = [footer]
    while len(top) + len(bottom) + 1 > height and (bottom or len(top) > 1):
        if bottom:
            bottom = []
        else:
            top.pop(0 if top[0].style is Style.TITLE else 1)
    space = max(height - len(top) - len(bottom), 0)
    blank = [Line(" " * width)] * max(space - len(body), 0) if bottom else []
    return [*top, *body[:space], *blank, *bottom][: max(height, 0)]


def body_space(height: int) -> int:
    """How many table rows a screen of `height` lines shows (see `_layout`)."""
    return height - 4 if height >= 5 else (1 if height >= 2 else 0)


def _window(selected: int, total: int, space: int) -> int:
    """First row shown so that the selected row is on screen."""
    if space <= 0 or total <= space:
        return 0
    return min(max(selected - space + 1, 0), total - space)


def render_list(inp: Inputs, width: int, height: int) -> list[Line]:
    rows = list_rows(inp)
    chosen = choose(process_columns(inp, rows), width)
    keys = [r.key for r in rows]
    sel = selected_index(inp.state, keys)
    space = body_space(height)
    first = _window(sel, len(rows), space)
    stale = bool(inp.status.error)
    body = []
    for i, r in enumerate(rows[first : first + space], start=first):
        style = Style.SELECTED if i == sel else (Style.STALE if stale else Style.NORMAL)
        body.append(Line(line(chosen, r, width, inp.ascii_only), style))
    if not rows and inp.doc is not None:
        body.append(Line(fit("(no process matches)" if inp.doc.processes else "(no sockets)", width)))
    top = [
        Line(fit(_title(inp, len(rows)), width, ascii_only=inp.ascii_only), Style.TITLE),
        _fitted(_status(inp), width, inp.ascii_only),
        Line(header_line(chosen, width), Style.HEADER),
    ]
    return _layout(top, body, Line(fit(LIST_KEYS, width), Style.FOOTER), width, height)


def _fitted(ln: Line, width: int, ascii_only: bool) -> Line:
    return Line(fit(ln.text, width, ascii_only=ascii_only), ln.style)


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
        _status(inp)
        if inp.status.error
        else Line(f"findings {first + 1}-{first + len(body)} of {len(findings)} listed")
    )
    top = [
        Line(fit(_detail_title(inp), width, ascii_only=inp.ascii_only), Style.TITLE),
        _fitted(status, width, inp.ascii_only),
        Line(header_line(chosen, width), Style.HEADER),
    ]
    return _layout(top, body, Line(fit(DETAIL_KEYS, width), Style.FOOTER), width, height)


def render(inp: Inputs, width: int, height: int) -> list[Line]:
    """The whole screen; a 0x0 or 1x1 terminal gets what fits, never an exception."""
    if width <= 0 or height <= 0:
        return []
    if inp.state.view is View.DETAIL:
        return render_detail(inp, width, height)
    return render_list(inp, width, height)


def context(inp: Inputs, height: int) -> Context:
    """What `state.handle_key` needs to know about the screen `render` draws."""
    rows = list_rows(inp)
    return Context(
        rows=[r.key for r in rows],
        page_rows=max(body_space(height), 1),
        kinds=model.kinds_seen([inp.doc, inp.detail]),
        has_pods=bool(inp.doc and inp.doc.pods),
        detail_lines=len(target_findings(inp)),
        detail_pages=inp.detail.page.total_pages if inp.detail else 1,
    )


def render_plain(inp: Inputs, width: int) -> str:
    """One frame for a pipe or a dumb terminal: every process (then every pod), no key help."""
    rows = list_rows(inp)
    chosen = choose(process_columns(inp, rows), width)
    out = [fit(_title(inp, len(rows)), width, ascii_only=inp.ascii_only), header_line(chosen, width)]
    out += [line(chosen, r, width, inp.ascii_only) for r in rows]
    if inp.doc is not None and inp.doc.pods and not inp.state.pods:
        pods = Inputs(inp.state.__class__(pods=True), inp.doc, None, inp.trends, inp.status, inp.ascii_only)
        pod_rows = list_rows(pods)
        pod_cols = choose(process_columns(pods, pod_rows), width)
        out += ["", header_line(pod_cols, width)] + [
            line(pod_cols, r, width, inp.ascii_only) for r in pod_rows
        ]
    return "\n".join(x.rstrip() for x in out) + "\n"
