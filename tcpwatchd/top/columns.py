"""Table columns and their cells: which columns fit a width, and each cell's text (not yet sanitized).

Columns are kept by priority (lowest first) while they fit; the name column takes what is left, so a
40-column terminal keeps NAME, FIND, CWAGE and CW and drops the rest, never wrapping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from tcpwatchd.top.text import cut, fit, width_of

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Column(Generic[T]):
    header: str
    width: int  # for the flexible column: its minimum
    priority: int
    cell: Callable[[T], str]
    right: bool = True
    flex: bool = False


def choose(columns: Sequence[Column[T]], width: int) -> list[tuple[Column[T], int]]:
    """Columns that fit in `width` (one space between two), in display order, each with its width."""
    flex = [c for c in columns if c.flex]
    used = sum(c.width for c in flex) + max(len(flex) - 1, 0)
    kept: set[int] = {id(c) for c in flex}
    for c in sorted((c for c in columns if not c.flex), key=lambda c: c.priority):
        if used + 1 + c.width <= width:
            kept.add(id(c))
            used += 1 + c.width
    spare = max(width - used, 0)
    out: list[tuple[Column[T], int]] = []
    for c in columns:
        if id(c) in kept:
            w = c.width + (spare if c.flex and c is flex[0] else 0)
            out.append((c, w))
    return out


def line(chosen: Sequence[tuple[Column[T], int]], item: T, width: int, ascii_only: bool) -> str:
    """One table row exactly `width` columns wide, every cell sanitized."""
    cells = [fit(c.cell(item), w, right=c.right and not c.flex, ascii_only=ascii_only) for c, w in chosen]
    return _join(cells, width)


def header_line(chosen: Sequence[tuple[Column[T], int]], width: int) -> str:
    return _join([fit(c.header, w, right=c.right and not c.flex) for c, w in chosen], width)


def _join(cells: list[str], width: int) -> str:
    """Cells already safe and of their exact widths: joined and padded, never escaped twice."""
    text = cut(" ".join(cells), width)  # a screen narrower than the name column's minimum
    return text + " " * max(width - width_of(text), 0)


def count(n: int) -> str:
    """A count in at most 5 columns: 12345 → '12345', 123456 → '123k', 12345678 → '12.3M'."""
    if n < 100_000:
        return str(n)
    if n < 1_000_000:
        return f"{n // 1000}k"
    return f"{n / 1_000_000:.1f}M" if n < 100_000_000 else f"{n // 1_000_000}M"


def age(seconds: float | None) -> str:
    """412.5 → '6m52s', 45 → '45s', 3900 → '1h05m', 190000 → '2d04h'; None → '-'."""
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
