"""Process names (comm) as text that is safe everywhere and keeps distinct names distinct.

A comm is up to 15 arbitrary bytes but NUL (TASK_COMM_LEN, include/linux/sched.h; PR_SET_NAME copies any
bytes, kernel/sys.c). It becomes a label value, a JSON string and a log field, so it is decoded once, here,
into printable text by an injective escaping (two different comms never give the same text):

- a backslash becomes two (`\\\\`), so every other backslash below starts an escape;
- a byte that is not part of valid UTF-8 becomes `\\xNN` (always NN >= 80);
- a character that is not printable (`str.isprintable`: controls, format characters such as bidi
  overrides, separators other than space) becomes `\\xNN` below U+0080, `\\uNNNN` or `\\UNNNNNNNN` above;
- a leading `~` becomes `\\x7e`: label values that start with `~` are tcpwatchd's own (`~other`, the
  series that aggregates names beyond `[exporter] max_process_label_values`), and no process can forge one.

So the byte 0x80 is `\\x80` and the four characters `\\x80` are `\\\\x80`: two names, two series.
"""

from __future__ import annotations

RESERVED_PREFIX = "~"  # label values tcpwatchd makes up itself start with this; no decoded name does


def decode_name(raw: bytes) -> str:
    r"""The printable, injective text of a process name.

    >>> decode_name(b"nginx"), decode_name(b"a\\b"), decode_name(b"\x80"), decode_name(b"\\x80")
    ('nginx', 'a\\\\b', '\\x80', '\\\\x80')
    >>> decode_name(b"evil\x1b[2J\n"), decode_name("\u202egnp".encode()), decode_name(b"~other")
    ('evil\\x1b[2J\\x0a', '\\u202egnp', '\\x7eother')
    """
    text = raw.decode("utf-8", errors="surrogateescape")  # bad bytes -> lone surrogates U+DC80..U+DCFF
    if text.isprintable() and "\\" not in text and not text.startswith(RESERVED_PREFIX):
        return text  # the common case: one check in C
    out = [_escape(ch) for ch in text]
    if out and out[0] == RESERVED_PREFIX:
        out[0] = "\\x7e"
    return "".join(out)


def _escape(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch.isprintable():
        return ch
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte surrogateescape could not decode
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
