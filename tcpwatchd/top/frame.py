"""What every screen shares: styled lines, the inputs of a frame, the status line and the layout.

Each line is exactly `width` columns and there are never more than `height` lines.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tcpwatchd.top.document import Document
from tcpwatchd.top.state import State
from tcpwatchd.top.text import fit
from tcpwatchd.top.trends import Trends


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


def status_line(inp: Inputs) -> Line:
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


def layout(top: list[Line], body: list[Line], footer: Line, width: int, height: int) -> list[Line]:
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


def fitted(ln: Line, width: int, ascii_only: bool) -> Line:
    return Line(fit(ln.text, width, ascii_only=ascii_only), ln.style)
