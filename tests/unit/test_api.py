"""The JSON API (docs/api.md version 1): every documented field and its type, paging through thousands of
findings, filters, 400s, hostile names, and the daemon's route answering it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from types import MappingProxyType
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tcpwatchd.detectors.base import Detail, Finding, Kind
from tcpwatchd.model import ProcessLabels
from tcpwatchd.outputs.api import API_PATH, answer, api_handler, build_document, parse_query
from tcpwatchd.outputs.prometheus import LatestPoll
from tcpwatchd.poller import PollResult
from tcpwatchd.report import ProcessSummary, Report
from tcpwatchd.top.document import parse_document
from tcpwatchd.web.endpoint import MetricsEndpoint
from tcpwatchd.web.http import Response
from tests.support.detect_snapshots import Scenario

NGINX = ProcessLabels("nginx")
API = ProcessLabels("api", "shop", "api-7d9f", "app")
SIDECAR = ProcessLabels("envoy", "shop", "api-7d9f", "proxy")
HOSTILE = ProcessLabels('ev"il\n\x1b[2J\udcff')  # a name decoded with surrogateescape keeps a lone surrogate


def _finding(kind: str, labels: ProcessLabels, port: int, age: float = 412.5) -> Finding:
    return Finding(
        kind=Kind(kind), process=labels.process, pid=100 + port % 7, unit="x.service",
        local="127.0.0.1:8080", remote=f"127.0.0.1:{port}", peer="127.0.0.1", age_seconds=age,
        details=(Detail("age_is_lower_bound", "yes"), Detail("unread_bytes", 4096)),
        namespace=labels.namespace, pod=labels.pod, container=labels.container,
    )  # fmt: skip


def result(n_close_wait: int = 3, rule: str = "") -> PollResult:
    """A poll with `n_close_wait` CLOSE_WAIT findings for nginx (all counted, all listed) and a few more."""
    findings = [_finding("close_wait", NGINX, 10000 + i) for i in range(n_close_wait)]
    findings += [_finding("phantom", API, 20000), _finding("keepalive_off", HOSTILE, 30000)]
    if rule:
        findings = [Finding(**{**{s: getattr(f, s) for s in f.__slots__}, "rule": rule}) for f in findings]
    summaries = (
        ProcessSummary(NGINX, MappingProxyType({Kind("close_wait"): n_close_wait + 5}),
                       MappingProxyType({"oldest_age_seconds": 412.5})),
        ProcessSummary(API, MappingProxyType({Kind("phantom"): 1}), MappingProxyType({})),
        ProcessSummary(SIDECAR, MappingProxyType({}), MappingProxyType({})),
        ProcessSummary(HOSTILE, MappingProxyType({Kind("keepalive_off"): 1}), MappingProxyType({})),
    )  # fmt: skip
    counts = {
        ("established", NGINX): 10, ("close_wait", NGINX): n_close_wait + 5, ("established", API): 4,
        ("listen", SIDECAR): 1, ("established", SIDECAR): 2, ("established", HOSTILE): 1,
    }  # fmt: skip
    return PollResult(
        tracked=Scenario().poll(1.0, []),
        report=Report(tuple(findings), summaries, MappingProxyType({}), ()),
        sysctl=None,
        sysctl_status=None,
        duration_seconds=0.051,
        socket_counts=MappingProxyType(counts),
        number=42,
        interval_seconds=10.0,
    )


def doc(**query: str) -> dict[str, Any]:
    status, body = answer(result(), query)
    assert status == 200, body
    return body


def _types(obj: dict[str, Any], spec: dict[str, type | tuple[type, ...]]) -> None:
    assert set(spec) <= set(obj), set(spec) - set(obj)
    for key, kind in spec.items():
        assert isinstance(obj[key], kind) and not isinstance(obj[key], bool), (key, obj[key])


SUMMARY = {"sockets": dict, "sockets_total": int, "findings": dict, "findings_total": int}


def test_every_documented_field_has_its_type() -> None:
    d = doc()
    _types(d, {"version": int, "tcpwatchd_version": str, "poll": dict, "filters": dict, "processes": list,
               "pods": list, "findings": list, "page": dict})  # fmt: skip
    assert d["version"] == 1
    _types(d["poll"], {"number": int, "taken_at": float, "duration_seconds": float,
                       "interval_seconds": float, "source": str})  # fmt: skip
    assert d["filters"] == {"process": "", "namespace": "", "pod": "", "kind": ""}
    for p in d["processes"]:
        _types(p, {"process": str, "namespace": str, "pod": str, "container": str, **SUMMARY})
        assert p["close_wait_oldest_age_seconds"] is None or isinstance(
            p["close_wait_oldest_age_seconds"], float
        )
        assert all(isinstance(n, int) for n in [*p["sockets"].values(), *p["findings"].values()])
    for p in d["pods"]:
        _types(p, {"namespace": str, "pod": str, **SUMMARY})
    for f in d["findings"]:
        _types(f, {"kind": str, "process": str, "pid": int, "unit": str, "namespace": str, "pod": str,
                   "container": str, "local": str, "remote": str, "peer": str, "age_seconds": float,
                   "details": dict, "rule": str})  # fmt: skip
        assert all(isinstance(v, str) for v in f["details"].values())
    _types(d["page"], {"number": int, "per_page": int, "total_items": int, "total_pages": int})
    assert parse_document(json.loads(json.dumps(d))).poll.number == 42  # top reads it


def test_figures_per_process_and_per_pod() -> None:
    d = doc()
    assert [p["process"] for p in d["processes"]] == ["api", "envoy", 'ev"il\n\x1b[2J\udcff', "nginx"]
    nginx = next(p for p in d["processes"] if p["process"] == "nginx")
    # Every finding counted (8), even where only 3 are listed; sockets in node_exporter's spelling.
    assert nginx["findings"] == {"close_wait": 8} and nginx["findings_total"] == 8
    assert nginx["sockets"] == {"established": 10, "close_wait": 8} and nginx["sockets_total"] == 18
    assert nginx["close_wait_oldest_age_seconds"] == 412.5
    assert d["pods"] == [
        {"namespace": "shop", "pod": "api-7d9f", "sockets": {"established": 6, "listen": 1},
         "sockets_total": 7, "findings": {"phantom": 1}, "findings_total": 1,
         "close_wait_oldest_age_seconds": None},
    ]  # fmt: skip
    f = d["findings"][0]
    assert f["details"] == {"age_is_lower_bound": "yes", "unread_bytes": "4096"} and f["rule"] == ""


def test_paging_through_thousands_of_findings() -> None:
    big = result(n_close_wait=5000)
    seen: list[str] = []
    page, total_pages = 1, None
    while total_pages is None or page <= total_pages:
        status, body = answer(big, {"kind": "close_wait", "page": str(page), "per_page": "1000"})
        assert status == 200
        assert body["page"] == {"number": page, "per_page": 1000, "total_items": 5000, "total_pages": 5}
        total_pages = body["page"]["total_pages"]
        seen += [f["remote"] for f in body["findings"]]
        page += 1
    assert len(seen) == len(set(seen)) == 5000
    _, past = answer(big, {"page": "99", "per_page": "1000"})
    assert past["findings"] == [] and past["page"]["total_items"] == 5002
    _, default = answer(big, {})
    assert len(default["findings"]) == 100 and default["page"]["total_pages"] == 51


@pytest.mark.parametrize(
    ("query", "processes", "findings"),
    [
        ({"process": "nginx"}, ["nginx"], 3),
        ({"process": "ngi*"}, ["nginx"], 3),
        ({"process": "ngi"}, [], 0),  # exact or glob: never a substring
        ({"namespace": "shop"}, ["api", "envoy"], 1),
        ({"pod": "api-*"}, ["api", "envoy"], 1),
        ({"kind": "phantom"}, ["api"], 1),
        ({"kind": "close_wait", "pod": "api-7d9f"}, [], 0),
        ({"process": 'ev"il\n\x1b[2J\udcff'}, ['ev"il\n\x1b[2J\udcff'], 1),
    ],
)
def test_filters(query: dict[str, str], processes: list[str], findings: int) -> None:
    d = doc(**query)
    assert [p["process"] for p in d["processes"]] == processes
    assert len(d["findings"]) == findings == d["page"]["total_items"]
    assert {k: v for k, v in d["filters"].items() if v} == query
    if "kind" in query:
        assert all(set(p["findings"]) == {query["kind"]} for p in d["processes"])


@pytest.mark.parametrize(
    "query",
    [{"kind": "nonsense"}, {"page": "0"}, {"per_page": "5000"}, {"per_page": "0"}, {"page": "-1"},
     {"page": "1.5"}, {"page": "٣"}, {"per_page": " 5"}, {"bogus": "1"}, {"process": "x" * 300}],
)  # fmt: skip
def test_bad_parameters_are_400_with_an_error(query: dict[str, str]) -> None:
    status, body = answer(result(), query)
    assert status == 400 and isinstance(body["error"], str) and body["error"]
    with pytest.raises(ValueError):
        parse_query(query)


def test_no_poll_yet_is_503() -> None:
    status, body = answer(None, {})
    assert status == 503 and "no poll" in body["error"]


def test_a_lone_surrogate_and_control_characters_never_break_the_json() -> None:
    body = Response.json(200, doc()).body  # the server's own encoder
    text = body.decode("ascii")  # ensure_ascii: every hostile character is an escape
    assert "\\udcff" in text and "\\u001b[2J" in text and "\n" not in text.strip()
    assert json.loads(text)["processes"][2]["process"] == HOSTILE.process


def test_rule_is_carried() -> None:
    _, body = answer(result(rule="payments"), {"kind": "phantom"})
    assert body["findings"][0]["rule"] == "payments"


def test_non_finite_ages_are_null() -> None:
    r = result()
    inf = Finding(
        **{**{s: getattr(r.report.findings[0], s) for s in Finding.__slots__}, "age_seconds": float("inf")}
    )
    r2 = PollResult(
        **{
            **{s: getattr(r, s) for s in PollResult.__slots__},
            "report": Report((inf,), r.report.processes, MappingProxyType({}), ()),
        }
    )
    body = Response.json(200, build_document(r2, parse_query({}))).body
    assert json.loads(body)["findings"][0]["age_seconds"] is None


def test_the_daemon_route_serves_the_last_poll() -> None:
    latest = LatestPoll()
    endpoint = MetricsEndpoint(CollectorRegistry())
    endpoint.route(API_PATH, api_handler(latest))
    try:
        endpoint.server.listen("127.0.0.1", 0)
        bound = endpoint.server.address
        assert bound is not None
        url = f"http://127.0.0.1:{bound[1]}{API_PATH}"
        with pytest.raises(urllib.error.HTTPError) as early:
            urllib.request.urlopen(url, timeout=5)
        assert early.value.code == 503
        latest.publish(result().retained())
        with urllib.request.urlopen(url + "?process=nginx&per_page=2", timeout=5) as resp:
            got = json.loads(resp.read())
        assert [p["process"] for p in got["processes"]] == ["nginx"] and len(got["findings"]) == 2
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(url + "?kind=nope", timeout=5)
        assert bad.value.code == 400 and "unknown kind" in json.loads(bad.value.read())["error"]
    finally:
        endpoint.close()


def test_snapshot_table_shows_workload_columns_only_when_some_process_has_them() -> None:
    from tcpwatchd.snapshot_cli import render_table

    with_pods = render_table(doc(), "daemon http://127.0.0.1:9814")
    header = with_pods.splitlines()[0].split()
    assert header[:4] == ["PROCESS", "NAMESPACE", "POD", "CONTAINER"] and "CLOSE_WAIT" in header
    assert with_pods.splitlines()[1].startswith("nginx")  # the most findings first
    assert "\\x1b" in with_pods and "\x1b" not in with_pods  # the hostile name, escaped, on one line
    assert "from daemon http://127.0.0.1:9814" in with_pods and "rule=" not in with_pods
    plain = render_table(doc(process="nginx"))
    assert plain.splitlines()[0].split()[:2] == ["PROCESS", "ESTABLISHED"]
    assert "filters: process='nginx'" in plain and "8 findings counted, 3 listed:" in plain
