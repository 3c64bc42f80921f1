"""The screen as lines of text for a given width and height: no terminal, every string sanitized.

The process (or pod) list is drawn here, the detail of one row in `detail`; both share `frame`. Each
line is exactly `width` columns (a wide character that would straddle the edge becomes a space).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from tcpwatchd.top import model
from tcpwatchd.top.columns import Column, age, choose, count, header_line, line
from tcpwatchd.top.detail import render_detail, target_findings
from tcpwatchd.top.document import Summary
from tcpwatchd.top.frame import Inputs, Line, Status, Style, body_space, fitted, layout, status_line
from tcpwatchd.top.state import Context, View, selected_index
from tcpwatchd.top.text import fit
from tcpwatchd.top.trends import trend_text

__all__ = ["Inputs", "Line", "Status", "Style", "context", "render", "render_plain"]


LIST_KEYS = "q quit  j/k move  Enter open  / filter  K kind  s sort  p pods  Esc clear"
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


def list_rows(inp: Inputs) -> list[Summary]:
    if inp.doc is None:
        return []
    s = inp.state
    return model.visible_rows(inp.doc, s.pods, s.name_filter, s.kind, s.sort)


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
        fitted(status_line(inp), width, inp.ascii_only),
        Line(header_line(chosen, width), Style.HEADER),
    ]
    return layout(top, body, Line(fit(LIST_KEYS, width), Style.FOOTER), width, height)


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
