"""Rendering the fixture (hostile names included) at several sizes: safe text, exact widths, no crash."""

from __future__ import annotations

import copy
import unicodedata
from dataclasses import replace

import pytest

from tcpwatchd.top.document import parse_document
from tcpwatchd.top.render import Inputs, Status, Style, context, render, render_plain
from tcpwatchd.top.state import State, View
from tcpwatchd.top.text import width_of
from tcpwatchd.top.trends import Trends
from tests.support.api_fixture import answer, load_fixture

RAW = load_fixture()
DOC = parse_document(RAW)
DETAIL = parse_document(answer(RAW, {"process": "java-leaky", "per_page": "100"})[1])
HOSTILE_DETAIL = parse_document(answer(RAW, {"process": "evil*", "per_page": "100"})[1])
SIZES = [(200, 50), (120, 30), (80, 24), (40, 10), (20, 5), (12, 3), (5, 2), (1, 1)]


def inputs(**kw: object) -> Inputs:
    trends = Trends()
    trends.record(DOC)
    base = Inputs(State(), DOC, None, trends, Status("http://127.0.0.1:9814"))
    return replace(base, **kw)  # type: ignore[arg-type]


def assert_screen(lines: list[str], width: int, height: int) -> None:
    assert len(lines) <= height
    for text in lines:
        assert width_of(text) == width, (width, text)
        for ch in text:
            assert unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Cn", "Co", "Zl", "Zp"), repr(text)


HOSTILE_TARGET = next(p.key for p in DOC.processes if p.process.startswith("evil"))
SCREENS = {
    "list": inputs(),
    "pods": inputs(state=State(pods=True)),
    "stale": inputs(status=Status("x", "daemon unreachable: \x1b[31mConnection refused\n", 3.4)),
    "filtering": inputs(state=State(editing=True, name_filter="\x1b]0;pwned\x07")),
    "detail": inputs(state=State(view=View.DETAIL, target=("java-leaky", "", "", "")), detail=DETAIL),
    "hostile detail": inputs(state=State(view=View.DETAIL, target=HOSTILE_TARGET), detail=HOSTILE_DETAIL),
    "loading": inputs(state=State(view=View.DETAIL, target=("java-leaky", "", "", ""))),
    "no data yet": inputs(doc=None),
}


@pytest.mark.parametrize("screen", SCREENS)
@pytest.mark.parametrize(("width", "height"), SIZES)
def test_every_screen_fits_and_is_safe_at_every_size(screen: str, width: int, height: int) -> None:
    lines = render(SCREENS[screen], width, height)
    assert_screen([ln.text for ln in lines], width, height)
    if height >= 2:
        assert lines, "something shows"


def test_the_list_shows_the_leak_first_with_its_figures() -> None:
    lines = render(inputs(), 120, 20)
    header = next(i for i, ln in enumerate(lines) if ln.style is Style.HEADER)
    assert lines[header].text.split() == [
        "PROCESS", "POD", "EST", "CW", "TW", "LST", "OTH", "FIND", "LEAK", "PHAN", "NOKA", "CWAGE", "TREND",
    ]  # fmt: skip
    first = lines[header + 1]
    assert first.style is Style.SELECTED
    assert first.text.split()[:10] == ["java-leaky", "40", "17", "3", "0", "0", "17", "17", "0", "0"]
    assert "20m50s" in first.text
    assert lines[-1].style is Style.FOOTER and "q quit" in lines[-1].text


def test_narrow_terminals_drop_columns_by_priority() -> None:
    header = next(ln for ln in render(inputs(), 40, 10) if ln.style is Style.HEADER).text.split()
    assert header[0] == "PROCESS" and {"FIND", "CWAGE", "CW"} <= set(header)
    assert "TREND" not in header and "OTH" not in header
    two = render(inputs(), 40, 2)  # the status line and the first row survive
    assert two[0].text.startswith("sort: trouble") and two[1].text.startswith("java-leaky")


def test_the_detail_lists_the_findings_of_the_opened_process() -> None:
    lines = render(SCREENS["detail"], 120, 12)
    assert lines[0].text.startswith("java-leaky · 60 sockets · 17 findings (close_wait 17) · page 1/1")
    rows = [ln.text.split() for ln in lines if ln.text.startswith("close_wait")]
    assert [r[:4] for r in rows] == [
        ["close_wait", "20m50s", "127.0.0.1:51230", "127.0.0.1:8080"],
        ["close_wait", "19m50s", "127.0.0.1:51231", "127.0.0.1:8080"],
        ["close_wait", "18m50s", "127.0.0.1:51232", "127.0.0.1:8080"],
    ]
    assert "payments-api" in lines[3].text and "age_is_lower_bound=no" in lines[3].text


def test_stale_data_is_marked_and_dimmed() -> None:
    lines = render(SCREENS["stale"], 100, 12)
    assert "[stale]" in lines[0].text
    assert lines[1].style is Style.BANNER
    assert lines[1].text.startswith("daemon unreachable: \\e[31mConnection refused\\n, retrying in 3s")
    assert {ln.style for ln in lines[4:-1]} == {Style.STALE}


def test_context_matches_the_screen() -> None:
    ctx = context(inputs(), 10)
    assert ctx.rows[0] == ("java-leaky", "", "", "") and ctx.page_rows == 6 and ctx.has_pods
    assert context(SCREENS["detail"], 10).detail_lines == 3


def test_a_plain_frame_has_every_row_and_the_pods() -> None:
    raw = copy.deepcopy(RAW)
    text = render_plain(inputs(doc=parse_document(raw)), 100)
    lines = text.splitlines()
    assert lines[2].startswith("java-leaky") and len(lines) == 2 + 9 + 1 + 1 + 1
    assert lines[-1].startswith("shop/api-7d9f")
    assert "\x1b" not in text and all(width_of(line) <= 100 for line in lines)
