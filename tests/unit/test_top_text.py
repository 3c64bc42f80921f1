"""Hostile strings made safe for the terminal and cut by display width."""

from __future__ import annotations

import unicodedata

import pytest

from tcpwatchd.top.text import clean, fit, width_of

HOSTILE = [
    "evil\x1b[2J\x1b[31mred",
    "two\nlines\rback",
    "bell\x07\x08\x7f\x9b31m",  # C1 CSI (0x9b) is a control sequence on some terminals
    "\u202eevil bidi override",
    "zero\u200dwidth\u200bjoin",
    "bad\udcffsurrogate\ud800",
    "z" + "\u0301" * 50,
    "\u0301leading combining",
    "服务器进程名字" * 5,
    "emoji\U0001f916\ufe0f",
    "A" * 10_000,
    "line\u2028sep\u2029para",
    "private\ue000use",
]


def assert_safe(text: str) -> None:
    for ch in text:
        cat = unicodedata.category(ch)
        assert cat not in ("Cc", "Cf", "Cs", "Cn", "Co", "Zl", "Zp"), (text, hex(ord(ch)))


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("width", [1, 2, 5, 12, 40])
def test_clean_never_lets_a_control_through_and_never_exceeds_the_width(name: str, width: int) -> None:
    out = clean(name, width)
    assert_safe(out)
    assert width_of(out) <= width
    padded = fit(name, width)
    assert width_of(padded) == width
    assert_safe(padded)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("nginx", "nginx"),
        ("evil\x1b[2J", "evil\\e[2J"),
        ("a\nb\tc", "a\\nb\\tc"),
        ("back\\slash", "back\\\\slash"),
        ("\u202eabc", "\\u202eabc"),
        ("x\udcff", "x\\udcff"),
        ("\U000e0001tag", "\\U000e0001tag"),
    ],
)
def test_escapes_are_visible_and_unambiguous(raw: str, shown: str) -> None:
    assert clean(raw, 80) == shown


def test_a_cut_is_marked_and_wide_characters_count_twice() -> None:
    assert clean("abcdef", 4) == "abc…"
    assert clean("服务器进程", 6) == "服务…"  # 2+2 columns and the mark; a third would straddle
    assert width_of("服务器") == 6
    assert clean("abcdef", 4, ascii_only=True) == "abc~"
    assert clean("é服", 10, ascii_only=True) == "\\xe9\\u670d"


def test_combining_marks_stack_at_most_two_deep() -> None:
    out = clean("z\u0301\u0302\u0303", 40)
    assert out == "z\u0301\u0302\\u0303"
    assert clean("\u0301x", 10) == "\\u0301x"  # nothing to combine with


def test_a_ten_thousand_character_name_costs_only_its_width() -> None:
    assert clean("A" * 10_000, 10) == "A" * 9 + "…"
    assert clean("\x1b" * 10_000, 10) == "\\e" * 4 + "…"
