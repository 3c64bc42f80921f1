"""top's pure layers: the documented document parsed, rows sorted and filtered, trends, keys."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tcpwatchd.top import model
from tcpwatchd.top.document import DocumentError, parse_document
from tcpwatchd.top.fetcher import next_delay
from tcpwatchd.top.model import SortKey
from tcpwatchd.top.state import Action, Context, State, View, handle_key, query
from tcpwatchd.top.trends import Trends, findings_arrow, sparkline
from tests.support.api_fixture import load_fixture

DOC_MD_EXAMPLE: dict[str, Any] = {  # the example of docs/api.md, as written there
    "version": 1,
    "tcpwatchd_version": "0.1.0",
    "poll": {"number": 42, "taken_at": 1796083200.0, "duration_seconds": 0.051,
             "interval_seconds": 10.0, "source": "sockdiag"},
    "filters": {"process": "", "namespace": "", "pod": "", "kind": ""},
    "processes": [
        {"process": "nginx", "namespace": "", "pod": "", "container": "",
         "sockets": {"established": 10, "close_wait": 3}, "sockets_total": 13,
         "findings": {"close_wait": 3}, "findings_total": 3,
         "close_wait_oldest_age_seconds": 412.5}
    ],
    "pods": [
        {"namespace": "shop", "pod": "api-7d9f", "sockets": {"established": 4}, "sockets_total": 4,
         "findings": {}, "findings_total": 0}
    ],
    "findings": [
        {"kind": "close_wait", "process": "nginx", "pid": 123, "unit": "nginx.service",
         "namespace": "", "pod": "", "container": "",
         "local": "127.0.0.1:8080", "remote": "127.0.0.1:51234", "peer": "127.0.0.1",
         "age_seconds": 412.5, "details": {"age_is_lower_bound": "yes"}, "rule": ""}
    ],
    "page": {"number": 1, "per_page": 100, "total_items": 1, "total_pages": 1},
}  # fmt: skip


def test_the_documented_example_parses_field_by_field() -> None:
    doc = parse_document(DOC_MD_EXAMPLE)
    assert (doc.poll.number, doc.poll.interval_seconds, doc.poll.source) == (42, 10.0, "sockdiag")
    (nginx,) = doc.processes
    assert nginx.sockets == {"established": 10, "close_wait": 3} and nginx.findings_total == 3
    assert nginx.close_wait_oldest_age_seconds == 412.5
    assert doc.pods[0].pod == "api-7d9f" and doc.pods[0].close_wait_oldest_age_seconds is None
    f = doc.findings[0]
    assert (f.kind, f.pid, f.local, f.remote, f.peer, f.rule) == (
        "close_wait",
        123,
        "127.0.0.1:8080",
        "127.0.0.1:51234",
        "127.0.0.1",
        "",
    )
    assert f.details == {"age_is_lower_bound": "yes"}
    assert doc.page.total_pages == 1  # fmt: skip


def test_new_fields_are_ignored_and_missing_optional_ones_are_empty() -> None:
    raw = copy.deepcopy(DOC_MD_EXAMPLE)
    raw["brand_new"] = {"x": 1}
    raw["processes"][0]["brand_new"] = [1]
    del raw["processes"][0]["close_wait_oldest_age_seconds"], raw["findings"][0]["rule"]
    doc = parse_document(raw)
    assert doc.processes[0].close_wait_oldest_age_seconds is None and doc.findings[0].rule == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version=2), "version"),
        (lambda d: d["processes"][0].update(sockets_total="13"), "processes[0].sockets_total"),
        (lambda d: d["processes"][0]["sockets"].update(established=True), "processes[0].sockets"),
        (lambda d: d.update(findings={}), "findings: expected a list"),
        (lambda d: d["findings"].append(7), "findings[1]"),
    ],
)
def test_a_malformed_document_names_the_field(change: Any, message: str) -> None:
    raw = copy.deepcopy(DOC_MD_EXAMPLE)
    change(raw)
    with pytest.raises(DocumentError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_document(raw)


FIXTURE = parse_document(load_fixture())


def names(rows: list[model.Summary]) -> list[str]:
    return [r.process[:12] for r in rows]


def test_trouble_puts_the_leak_first_then_weighted_kinds_then_sockets() -> None:
    rows = model.visible_rows(FIXTURE, False, "", "", SortKey.TROUBLE)
    assert names(rows)[:4] == ["java-leaky", "evil\x1b[2J\x1b[31", "nginx", "postgres"]
    by_sockets = model.visible_rows(FIXTURE, False, "", "", SortKey.SOCKETS)
    assert names(by_sockets)[:3] == ["nginx", "java-leaky", "postgres"]
    assert names(model.visible_rows(FIXTURE, False, "", "", SortKey.NAME))[0] == "AAAAAAAAAAAA"


def test_a_close_wait_age_breaks_a_tie_in_weighted_findings() -> None:
    raw = copy.deepcopy(DOC_MD_EXAMPLE)
    young = copy.deepcopy(raw["processes"][0]) | {"process": "young", "close_wait_oldest_age_seconds": 5.0}
    many = copy.deepcopy(raw["processes"][0]) | {"process": "big", "sockets_total": 900}
    raw["processes"] += [young, many | {"close_wait_oldest_age_seconds": 5.0}]
    rows = model.sort_rows(parse_document(raw).processes, SortKey.TROUBLE)
    assert [r.process for r in rows] == ["nginx", "big", "young"]


def test_filters_by_name_substring_and_by_kind() -> None:
    assert names(model.visible_rows(FIXTURE, False, "NGI", "", SortKey.TROUBLE)) == ["nginx"]
    assert names(model.visible_rows(FIXTURE, False, "", "keepalive_off", SortKey.TROUBLE)) == ["nginx"]
    assert model.visible_rows(FIXTURE, False, "nginx", "close_wait", SortKey.TROUBLE) == []
    assert [model.label(p) for p in model.visible_rows(FIXTURE, True, "", "", SortKey.TROUBLE)] == [
        "shop/api-7d9f"
    ]


def test_glob_escape_makes_an_exact_match() -> None:
    import fnmatch

    for name in ["a[1]*", "?x", "nginx", "[[]"]:
        assert fnmatch.fnmatchcase(name, model.glob_escape(name))
        assert not fnmatch.fnmatchcase(name + "z", model.glob_escape(name))


def test_trends_record_each_poll_once_and_forget_departed_rows() -> None:
    trends = Trends(depth=3)
    raw = copy.deepcopy(DOC_MD_EXAMPLE)
    for number, sockets in [(1, 10), (1, 99), (2, 20), (3, 30), (4, 40)]:
        raw["poll"]["number"] = number
        raw["processes"][0]["sockets_total"] = sockets
        trends.record(parse_document(raw))
    key = ("nginx", "", "", "")
    assert [s.sockets for s in trends.samples(key)] == [20, 30, 40]
    raw["processes"] = []
    for number in (5, 6, 7):
        raw["poll"]["number"] = number
        trends.record(parse_document(raw))
    assert trends.samples(key) == []


def test_sparkline_and_arrow() -> None:
    assert sparkline([1, 5, 9], 8) == "▁▅█"
    assert sparkline([3, 3], 8) == "▁▁" and sparkline([1, 2, 3], 2) == "▁█"
    assert sparkline([0, 9], 8, ascii_only=True) == "_#"
    trends = Trends()
    raw = copy.deepcopy(DOC_MD_EXAMPLE)
    for number, found in [(1, 3), (2, 5)]:
        raw["poll"]["number"], raw["processes"][0]["findings_total"] = number, found
        trends.record(parse_document(raw))
    assert findings_arrow(trends.samples(("nginx", "", "", ""))) == "↑"


ROWS = [("a", "", "", ""), ("b", "", "", ""), ("c", "", "", "")]


def test_keys_move_open_go_back_and_quit() -> None:
    ctx = Context(rows=ROWS, page_rows=2, kinds=["close_wait", "phantom"])
    s, _ = handle_key(State(), "j", ctx)
    s, _ = handle_key(s, "down", ctx)
    s, _ = handle_key(s, "down", ctx)  # stops at the last row
    assert s.selected == ROWS[2]
    s, _ = handle_key(s, "pgup", ctx)
    assert s.selected == ROWS[0]
    s, action = handle_key(s, "enter", ctx)
    assert (s.view, s.target, action) == (View.DETAIL, ROWS[0], Action.REFETCH)
    assert query(s) == {"process": "a", "page": "1", "per_page": "100"}
    s, action = handle_key(s, "esc", ctx)
    assert (s.view, action) == (View.LIST, Action.REFETCH)
    assert handle_key(s, "q", ctx)[1] is Action.QUIT


def test_filter_typing_kind_cycling_and_sorting() -> None:
    ctx = Context(rows=ROWS, kinds=["close_wait", "phantom"])
    s, _ = handle_key(State(), "/", ctx)
    for key in "ngx":
        s, _ = handle_key(s, key, ctx)
    s, _ = handle_key(s, "backspace", ctx)
    assert (s.name_filter, s.editing) == ("ng", True)
    assert handle_key(s, "q", ctx)[1] is Action.NONE  # q is a letter while typing
    s, _ = handle_key(s, "enter", ctx)
    assert (s.name_filter, s.editing) == ("ng", False)
    s2, _ = handle_key(handle_key(s, "/", ctx)[0], "x", ctx)
    assert handle_key(s2, "esc", ctx)[0].name_filter == "ng"  # Esc cancels the edit
    kinds = []
    for _ in range(3):
        s, action = handle_key(s, "K", ctx)
        kinds.append(s.kind)
        assert action is Action.REFETCH
    assert kinds == ["close_wait", "phantom", ""]
    s, _ = handle_key(s, "K", ctx)
    assert query(s) == {"kind": "close_wait", "per_page": "1"}
    assert handle_key(s, "s", ctx)[0].sort is SortKey.FINDINGS
    assert handle_key(s, "5", ctx)[0].sort is SortKey.NAME
    cleared, _ = handle_key(s, "esc", ctx)
    assert (cleared.name_filter, cleared.kind) == ("", "")


def test_the_next_fetch_aims_just_after_the_daemons_next_poll() -> None:
    doc = parse_document(DOC_MD_EXAMPLE)  # taken_at 1796083200, every 10 s, 0.051 s long
    assert next_delay(doc, 0.0, 1796083203.0) == pytest.approx(7.301)
    assert next_delay(doc, 0.0, 1796083100.0) == 10.0  # a clock that disagrees: the plain interval
    assert next_delay(doc, 2.5, 1796083203.0) == 2.5  # --interval wins
    assert next_delay(doc, 0.0, 1796083210.2) == 0.5  # never a busy loop
