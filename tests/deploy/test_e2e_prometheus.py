"""End to end: a real Prometheus scrapes a real tcpwatchd; the alerts fire, every dashboard query shows data.

One private network namespace holds a real CLOSE_WAIT leak and its healthy look-alike, and every other
condition the dashboard shows (tests/support/e2e_scene.py); tcpwatchd polls it every second, and Debian's
Prometheus scrapes it every second with a copy of deploy/prometheus/tcpwatchd-rules.yml whose `for:` are
all 2s (nothing else changed). The scrape is over HTTPS with a password, as off loopback it must be:
tcpwatchd serves TLS and bcrypt basic auth from an exporter-toolkit web config, and the job has
`scheme: https`, `tls_config.ca_file` and `basic_auth`. Prometheus is asked through its HTTP API, from
inside the namespace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import yaml

from tests.deploy.tools import DEPLOY, require_tool
from tests.support.e2e_dashboard import (
    Target,
    interpolate,
    label_values_parts,
    regex_value,
    shows,
    targets,
    variable_queries,
)
from tests.support.e2e_prometheus import (
    Alert,
    PrometheusAPI,
    ScrapeAuth,
    Series,
    short_for_rules,
    start_prometheus,
)
from tests.support.e2e_scene import (
    INSTANCE,
    LEAKED,
    LEAKY,
    PHANTOMS,
    PROBED,
    PROMPT,
    SENDER,
    STORMED,
    UP_LOCAL,
    UP_SINK,
    leak_close_wait,
    phantom,
    probed_idle,
    rst_on_close,
    start_servers,
    start_tcpwatchd,
    storm,
    unresponsive_peer,
)
from tests.support.env import require_netns
from tests.support.netns import NetNS, veth, wait_until
from tests.support.tlscerts import make_certs

RULES = DEPLOY / "prometheus" / "tcpwatchd-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "tcpwatchd.json"
FOR = "2s"
WAIT = 60  # seconds, at most, for any one alert or panel (they take ~10 s)
USER, PASSWORD = "prometheus", "e2e correct horse"


def tls_and_auth(work: Path) -> tuple[Path, ScrapeAuth]:
    """tcpwatchd's web config (TLS with a test CA's certificate for 127.0.0.1, one bcrypt user) and the
    matching scrape settings for Prometheus."""
    certs = make_certs(work / "certs")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()  # cost 4: a test, not a vault
    web = work / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"basic_auth_users:\n  {USER}: {hashed}\n",
        encoding="utf-8",
    )
    password = work / "scrape-password"
    password.write_text(PASSWORD, encoding="utf-8")
    return web, ScrapeAuth(certs.ca, USER, password)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ScrapeAuth]:
    return tls_and_auth(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory, tls: tuple[Path, ScrapeAuth]) -> Iterator[PrometheusAPI]:
    require_netns()  # before the autouse check would run: module fixtures come first
    binary = require_tool("prometheus")
    work = tmp_path_factory.mktemp("e2e")
    rules = work / "tcpwatchd-rules.yml"
    rules.write_text(short_for_rules(RULES.read_text(encoding="utf-8"), FOR), encoding="utf-8")
    web, auth = tls
    with contextlib.ExitStack() as stack:
        srv, sink = stack.enter_context(NetNS()), stack.enter_context(NetNS())
        _, sink_link = veth(srv, UP_LOCAL, sink, UP_SINK)
        rst_server = start_servers(srv, sink)
        logs = [start_tcpwatchd(srv, work, web), start_prometheus(srv, binary, work, [INSTANCE], rules, auth)]
        api = PrometheusAPI(srv)
        try:
            api.wait_scraping()
        except AssertionError as e:
            tails = "\n".join(f"--- {log.name}:\n{log.read_text()[-3000:]}" for log in logs)
            raise AssertionError(f"{e}\n{tails}") from None
        # Everything below happens while tcpwatchd watches and Prometheus scrapes.
        leak_close_wait(srv)
        storm(srv)
        unresponsive_peer(sink, sink_link)
        rst_on_close(srv, api, rst_server)
        phantom(srv, api, stack)
        probed_idle(srv)
        yield api


@pytest.mark.integration
def test_prometheus_scrapes_over_https_with_a_password(
    prom: PrometheusAPI, tls: tuple[Path, ScrapeAuth]
) -> None:
    [target] = prom.targets()
    assert target["scrapeUrl"] == f"https://{INSTANCE}/metrics"
    assert (target["health"], target["lastError"]) == ("up", "")
    assert [s.value for s in prom.query('up{job="tcpwatchd"}')] == [1]
    # ...and without the password nobody gets the numbers.
    answer = prom.ns.run(
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
        "--cacert", str(tls[1].ca_file), f"https://{INSTANCE}/metrics", timeout=30, check=False,
    )  # fmt: skip
    assert answer.stdout == "401"


# --- alerts -------------------------------------------------------------------------------------------


def _alerts(api: PrometheusAPI, name: str, state: str = "firing") -> list[Alert]:
    return [a for a in api.alerts() if a.name == name and a.state == state]


def _wait_firing(api: PrometheusAPI, name: str, labels: dict[str, str]) -> Alert:
    def firing() -> list[Alert]:
        return [a for a in _alerts(api, name) if labels.items() <= a.labels.items()]

    wait_until(lambda: bool(firing()), timeout=WAIT, interval=0.5, what=f"{name} {labels} firing")
    [alert] = firing()
    return alert


@pytest.mark.integration
def test_close_wait_leak_alert_fires_for_the_leaky_process_only(prom: PrometheusAPI) -> None:
    alert = _wait_firing(prom, "TcpwatchdCloseWaitLeak", {"process": LEAKY})
    assert alert.labels == {
        "alertname": "TcpwatchdCloseWaitLeak",
        "job": "tcpwatchd",
        "instance": INSTANCE,
        "process": LEAKY,
        "severity": "warning",
    }
    assert alert.annotations["summary"] == f"CLOSE_WAIT leak in {LEAKY} on {INSTANCE}"
    assert alert.annotations["description"].startswith(f"{LEAKED} sockets of {LEAKY} have stayed")
    assert alert.annotations["runbook_url"].endswith("/docs/runbook.md#close_wait-leak")
    # The look-alike served the same clients and is watched (its gauge is there, at 0), but never alerts.
    assert [s.value for s in prom.query(f'tcpwatchd_close_wait_leaked_sockets{{process="{PROMPT}"}}')] == [0]
    everything = [a for a in prom.alerts() if a.name == "TcpwatchdCloseWaitLeak"]
    assert {a.labels["process"] for a in everything} == {LEAKY}


# Every other condition the scene builds, and the labels its alert must carry.
FIRING = {
    "TcpwatchdStalledReceive": {"process": LEAKY},
    "TcpwatchdPhantomConnections": {"process": PHANTOMS},
    "TcpwatchdReconnectStorm": {"process": STORMED},
    "TcpwatchdUnresponsivePeers": {"process": SENDER},
    "TcpwatchdSysctlDrift": {"name": "net.ipv4.tcp_keepalive_time"},
}
# A healthy tcpwatchd, scraped and polling: these must stay silent (not even pending).
QUIET = ("TcpwatchdDown", "TcpwatchdStale", "TcpwatchdSourceFailing")


@pytest.mark.integration
@pytest.mark.parametrize(("name", "labels"), sorted(FIRING.items()))
def test_alert_fires_for_the_condition_built(prom: PrometheusAPI, name: str, labels: dict[str, str]) -> None:
    alert = _wait_firing(prom, name, labels)
    assert alert.labels["instance"] == INSTANCE
    assert INSTANCE in alert.annotations["summary"]
    assert all(value in alert.annotations["summary"] for value in labels.values())


@pytest.mark.integration
def test_alerts_about_tcpwatchd_itself_stay_quiet(prom: PrometheusAPI) -> None:
    _wait_firing(prom, "TcpwatchdCloseWaitLeak", {"process": LEAKY})  # long enough for any to fire
    assert sorted({a.name for a in prom.alerts()} & set(QUIET)) == []


@pytest.mark.integration
def test_attribution_alert_says_what_the_daemon_says(prom: PrometheusAPI) -> None:
    """Even root may not read every fd table (a container's PID 1 in another user namespace): it depends
    on the host, so the alert is held to the daemon's own gauge, whatever that says here."""
    _wait_firing(prom, "TcpwatchdCloseWaitLeak", {"process": LEAKY})  # long enough for it to fire
    [partial] = prom.query("tcpwatchd_attribution_partial")
    assert bool(_alerts(prom, "TcpwatchdAttributionPartial")) == (partial.value == 1)


def test_the_test_rules_differ_from_the_shipped_ones_only_in_for() -> None:
    shipped = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    copied = yaml.safe_load(short_for_rules(RULES.read_text(encoding="utf-8"), FOR))
    for group, twin in zip(shipped["groups"], copied["groups"], strict=True):
        for rule, copy in zip(group["rules"], twin["rules"], strict=True):
            assert copy.pop("for", None) == (FOR if "for" in rule else None)
            rule.pop("for", None)
            assert copy == rule


# --- the Grafana dashboard ----------------------------------------------------------------------------

TARGETS = targets(DASHBOARD)
# $instance as Grafana sends an include-all variable's one value, $process as its "All" value; a panel
# expected to show one process is asked with that process chosen, so a misspelt filter returns nothing.
VARIABLES = {"instance": regex_value(INSTANCE), "process": ".*", "namespace": ".*", "pod": ".*"}

# What each panel query must show in this scene: the condition built for it, by the process it was built in.
EXPECTED = {
    "Leaked CLOSE_WAIT/A": shows("> 0"),
    "Phantom connections/A": shows("> 0"),
    "Storming peers/A": shows("> 0"),
    "Stalled receives/A": shows("> 0"),
    "Unresponsive peers/A": shows("> 0"),
    # A new namespace starts with the kernel's keepalive defaults (7200 s, 75 s, 9 probes: TCP_KEEPALIVE_*
    # in include/net/tcp.h, set by tcp_sk_init), none of them the policy's.
    "Sysctls off policy/A": shows("== 3"),
    "CLOSE_WAIT sockets per process/A": shows(f"== {LEAKED}", process=LEAKY),
    "Oldest CLOSE_WAIT age/A": shows(">= 2", process=LEAKY),  # min_age_seconds, once it leaks
    "Leaked CLOSE_WAIT sockets/A": shows(f"== {LEAKED}", process=LEAKY),
    "Sockets by state/A": shows(f">= {LEAKED}", state="close_wait"),
    "Phantoms and idle suspects/A": shows("== 1", process=PHANTOMS),
    "Phantoms and idle suspects/B": shows("== 1", process=PHANTOMS),
    "Connections without keepalive/A": shows("== 2", process=PHANTOMS),  # the phantom and the suspect
    "Reconnect storms/A": shows("== 1", process=STORMED),
    "New connections per second/A": shows("> 0"),
    "Stalled receive queues/A": shows(f"== {LEAKED}", process=LEAKY),  # 10 bytes it never read, each
    "Unresponsive peers per process/A": shows("== 1", process=SENDER),
    "RST on close and other aborts/A": shows("> 0", instance=INSTANCE),
    # No abort of another kind is built (they need memory pressure, linger or timeouts of minutes):
    # the query returns its reasons at rate 0.
    "RST on close and other aborts/B": shows(">= 0", reason="on_timeout"),
    "Audited sysctls/A": shows("== 7200", name="net.ipv4.tcp_keepalive_time"),
    "Audited sysctls/B": shows("== 600", name="net.ipv4.tcp_keepalive_time"),
    "Audited sysctls/C": shows("== 0", name="net.ipv4.tcp_keepalive_time"),
    "Share of instances compliant/A": shows("== 0", name="net.ipv4.tcp_keepalive_time"),
    "Poll duration/A": shows("> 0", instance=INSTANCE),
    "Poll duration/B": shows("> 0", instance=INSTANCE),
    "Source health/A": shows("== 1", source="sockdiag"),
    # 0 where root reads every fd table, 1 where it cannot (a container's PID 1 in another user
    # namespace): the host decides, and the alert test holds the alert to the same gauge.
    "Source health/B": shows(">= 0"),
    "Time since last poll/A": shows(">= 0", instance=INSTANCE),
    # Probing: pb-idle's quiet client answers every probe (alive), so nothing is proven or reaped.
    "Phantom probes (proven)/A": shows("== 0", process=PROBED),
    "Phantom probes (proven)/B": shows("> 0", result="alive"),
    "Phantom probes (proven)/C": shows("== 0", process=PROBED),
    # Issue 13 panels: the scene builds no saturated listener, fd leak to a limit or port pile-up (their
    # integration tests do); here each query must return the scene's series.
    "Accept queue fill/A": shows(">= 0", process=STORMED),
    "Accept queue fill/B": shows(">= 0", instance=INSTANCE),
    "Time to fd exhaustion/A": shows(">= 0", process=LEAKY),  # +Inf: its fds are not heading anywhere yet
    "Ephemeral port use/A": shows(">= 0", process=LEAKY),
}
# The per-pod row: this scene has no pod, so every query of the row must come back empty (a host process
# that leaked into a pod's series would show here). tests/integration/test_containers.py builds pods.
NO_POD_IN_SCENE = {
    "Sockets per pod/A",
    "Findings per pod/A",
    "Findings per pod/B",
    "Findings per pod/C",
    "Findings per pod/D",
    "Keepalive time per pod/A",
    "RST on close per pod/A",
}
# The row's desired keepalive line is the instance's own, which the scene has.
EXPECTED["Keepalive time per pod/B"] = shows("== 600", name="net.ipv4.tcp_keepalive_time")


def test_every_panel_query_has_an_expectation() -> None:
    assert sorted([*EXPECTED, *NO_POD_IN_SCENE]) == sorted(t.id for t in TARGETS)


@pytest.mark.integration
def test_template_variables_list_the_instance_and_its_processes(prom: PrometheusAPI) -> None:
    queries = variable_queries(DASHBOARD)
    assert sorted(queries) == ["instance", "namespace", "pod", "process"]
    for name in ("namespace", "pod"):  # no pod here: nothing to list (empty values are not stored)
        selector, label = label_values_parts(queries[name])
        assert prom.label_values(label, interpolate(selector, VARIABLES)) == []
    selector, label = label_values_parts(queries["instance"])
    assert prom.label_values(label, interpolate(selector, VARIABLES)) == [INSTANCE]
    selector, label = label_values_parts(queries["process"])
    wanted = {LEAKY, PROMPT, PHANTOMS, STORMED, SENDER}

    def listed() -> bool:
        return wanted <= set(prom.label_values(label, interpolate(selector, VARIABLES)))

    wait_until(listed, timeout=WAIT, interval=0.5, what=f"the process variable to list {sorted(wanted)}")


@pytest.mark.integration
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.id)
def test_panel_query_shows_its_condition(prom: PrometheusAPI, target: Target) -> None:
    if target.id in NO_POD_IN_SCENE:
        expr = interpolate(target.expr, VARIABLES | {"namespace": ".*", "pod": ".*"})
        wait_until(lambda: prom.query("tcpwatchd_sockets"), timeout=WAIT, interval=0.5, what="any data")
        assert prom.query(expr) == [], f"{target.id}: a scene without pods shows {expr}"
        return
    expected = EXPECTED[target.id]
    process = dict(expected.labels).get("process")
    expr = interpolate(target.expr, VARIABLES | ({"process": regex_value(process)} if process else {}))
    got: list[Series] = []

    def met() -> bool:
        got[:] = prom.query(expr)
        return any(expected.met_by(s.value, s.labels) for s in got)

    try:
        wait_until(met, timeout=WAIT, interval=0.5, what=target.id)
    except AssertionError as e:
        raise AssertionError(f"{e}: {expr}\nwanted {expected}\ngot {got}") from None
    if not target.instant:  # a time series panel asks for a range
        assert prom.query_range(expr, seconds=30), f"{target.id}: the range query is empty: {expr}"
