"""Terminal-safe text: every string shown by `top` goes through `clean` or `fit` first.

Process names, peers and details are hostile input (a process can name itself with any bytes; JSON
can carry lone surrogates). Nothing that moves the cursor, changes colours, reorders text (bidi
controls) or has an unknown width may reach the terminal, and a string never exceeds its columns.
"""

from __future__ import annotations

import unicodedata

# Categories escaped visibly: controls (C0, DEL, C1), format chars (bidi overrides, zero-width joiners),
# surrogates, unassigned code points (a newer terminal may give them another width), line/paragraph
# separators. Private use (Co) is escaped too: its width is up to the font.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Co", "Zl", "Zp"})
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e", "\\": "\\\\"}
# ncurses keeps at most a few combining marks per cell (CCHARW_MAX); more stack into "zalgo" text.
MAX_COMBINING = 2


def escape(ch: str) -> str:
    """The visible escape of one unsafe character: ESC → '\\e', BEL → '\\x07', U+202E → '\\u202e'."""
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def char_width(ch: str) -> int:
    """Display columns of a safe character: 2 for East Asian wide/fullwidth, 0 for combining, else 1."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _is_unsafe(ch: str, ascii_only: bool) -> bool:
    if ch == "\\":
        return True
    if ascii_only and ord(ch) > 0x7E:
        return True
    return unicodedata.category(ch) in _ESCAPED_CATEGORIES or 0xFE00 <= ord(ch) <= 0xFE0F


def _pieces(text: str, ascii_only: bool) -> list[tuple[str, int]]:
    """(piece, width) per character, unsafe ones escaped; excess combining marks escaped too."""
    out: list[tuple[str, int]] = []
    stacked = MAX_COMBINING  # a mark with no base character before it is escaped
    for ch in text:
        if _is_unsafe(ch, ascii_only):
            piece = escape(ch)
            out.append((piece, len(piece)))
            stacked = MAX_COMBINING
            continue
        w = char_width(ch)
        if w == 0:
            if stacked >= MAX_COMBINING:
                piece = escape(ch)
                out.append((piece, len(piece)))
                continue
            stacked += 1
        else:
            stacked = 0
        out.append((ch, w))
    return out


def clean(text: str, width: int, ascii_only: bool = False) -> str:
    """`text` made safe and cut to at most `width` columns, '…' ('~' in ASCII) marking a cut.

    >>> clean("nginx\\x1b[2J", 20)
    'nginx\\\\e[2J'
    """
    if width <= 0:
        return ""
    # Only the first few characters per column can show: a 10k-character name costs O(width).
    pieces = _pieces(text[: width * (MAX_COMBINING + 1) + 1], ascii_only)
    total = sum(w for _, w in pieces)
    if total <= width and len(text) <= width * (MAX_COMBINING + 1):
        return "".join(p for p, _ in pieces)
    mark = "~" if ascii_only else "…"
    out, used = [], 0
    for piece, w in pieces:
        if used + w > width - 1:
            break
        out.append(piece)
        used += w
    return "".join(out) + mark


def width_of(safe: str) -> int:
    """Display columns of a string that `clean` produced."""
    return sum(char_width(ch) for ch in safe)


def cut(safe: str, width: int) -> str:
    """An already-safe string cut to at most `width` columns (no escaping: `clean` did it)."""
    out, used = [], 0
    for ch in safe:
        w = char_width(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out)


def fit(text: str, width: int, right: bool = False, ascii_only: bool = False) -> str:
    """`text` cleaned and padded to exactly `width` columns (right-aligned for numbers)."""
    safe = clean(text, width, ascii_only)
    pad = " " * (width - width_of(safe))
    return pad + safe if right else safe + pad
