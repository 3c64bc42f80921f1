"""Containers and pods, end to end: processes in network namespaces of their own, moved into cgroups with the
containerd, cgroupfs and Docker path shapes, named by a fake node's /var/log/containers, /var/log/pods and
Docker state under a temporary host root.

- "shop/web-1" (containerd shape): a loopback server and client, and a CLOSE_WAIT leak;
- "shop/api-1" (cgroupfs shape): a client that came back, leaving a phantom behind;
- Docker's "cache-1": the very same loopback 4-tuples as web-1.

Other tests on this machine make namespaces too: every check looks only at the pods made here.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tcpwatchd.config import Config
from tcpwatchd.poller import Poller, PollResult
from tests.support.env import require_netns
from tests.support.fake_node import Container, FakeNode, controller_root, docker_container, pod_container
from tests.support.netns import REPO, NetNS, fd_count, stop, unshared_sleepers, wait_line, wait_until

pytestmark = pytest.mark.integration

CONTAINER = str(REPO / "tests" / "support" / "netns_container.py")
PHANTOM = str(REPO / "tests" / "support" / "pod_phantom.py")
SS_LABELS = {
    "ESTAB": "established",
    "LISTEN": "listen",
    "CLOSE-WAIT": "close_wait",
    "FIN-WAIT-2": "fin_wait2",
    "TIME-WAIT": "time_wait",
}


@dataclass
class Pod:
    ns: NetNS
    container: Container
    child: subprocess.Popen[str]


@dataclass
class Node:
    host_root: Path
    web: Pod
    api: Pod
    cache: Pod


def ss_states(ns: NetNS) -> Counter[str]:
    rows = [row.split()[0] for row in ns.run("ss", "-tanH").stdout.splitlines() if row.strip()]
    return Counter(SS_LABELS.get(state, state.lower()) for state in rows)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    require_netns()
    controller = controller_root()
    if controller is None:
        pytest.skip("no writable cgroup v1 controller hierarchy (pids, cpu or memory) to make pods in")
    fake = FakeNode(tmp_path_factory.mktemp("host"), controller)
    spaces = [NetNS("tcpwpod") for _ in range(3)]
    try:
        for ns in spaces:
            ns.__enter__()
        web, api, cache = (
            pod_container("shop", "web-1", "nginx", "containerd"),
            pod_container("shop", "api-1", "api", "cgroupfs"),
            docker_container("cache-1"),
        )
        pods = []
        for ns, c, argv in zip(
            spaces, (web, api, cache), ([CONTAINER, "close_wait"], [PHANTOM], [CONTAINER]), strict=True
        ):
            child = ns.python(*argv)
            fake.add(c, child.pid)  # before anything reads its cgroup
            wait_line(child, "READY")
            pods.append(Pod(ns, c, child))
        yield Node(fake.host_root, *pods)
    finally:
        for ns in spaces:
            ns.close()
        fake.close()


def config(host_root: Path) -> Config:
    return Config.model_validate(
        {
            "namespaces": {"watch": "all", "host_root": str(host_root)},
            "detect": {"close_wait": {"min_age_seconds": 0}, "phantom": {"idle_seconds": 1}},
            "sysctl": {"mode": "audit"},
        }
    )


def per_pod(result: PollResult, namespace: str, pod: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for (state, labels), n in result.socket_counts.items():
        if (labels.namespace, labels.pod) == (namespace, pod):
            counts[state] += n
    return counts


def test_pods_counted_named_and_judged_apart(node: Node) -> None:
    poller = Poller(config(node.host_root))
    try:
        first = poller.poll()
        time.sleep(1.2)  # the api pod's first connection idles past idle_seconds
        assert node.api.child.stdin is not None
        node.api.child.stdin.write("again\n")
        node.api.child.stdin.flush()
        wait_line(node.api.child, "AGAIN")
        result = poller.poll()
    finally:
        poller.close()
    # Per pod, every socket of its namespace (owned, or no process's: FIN_WAIT2 orphans) agrees with ss.
    assert per_pod(first, "shop", "web-1") == ss_states(node.web.ns)
    assert per_pod(result, "shop", "web-1") == ss_states(node.web.ns)
    assert per_pod(result, "shop", "api-1") == ss_states(node.api.ns)
    assert per_pod(result, "shop", "web-1")["fin_wait2"] == 1  # the orphan counts under the pod
    nobody = [labels for (_, labels) in result.socket_counts if labels.pod == "web-1" and not labels.process]
    assert nobody and all(labels.container == "" for labels in nobody)
    # The Docker container is named by its state directory; same 4-tuples as web-1, counted apart.
    cache: Counter[str] = Counter()
    for (state, labels), n in result.socket_counts.items():
        if labels.container == "cache-1":
            cache[state] += n
    assert cache == Counter({"listen": 1, "established": 2})
    assert per_pod(result, "shop", "web-1")["established"] == 2
    # Findings name the right pod; the identical 4-tuples in two namespaces are two identities.
    leaks = [f for f in result.report.findings if f.kind == "close_wait"]
    assert {(f.namespace, f.pod, f.container) for f in leaks if f.pod} == {("shop", "web-1", "nginx")}
    phantoms = [f for f in result.report.findings if f.kind == "phantom"]
    assert [(f.pod, f.local) for f in phantoms if f.pod] == [("api-1", "127.0.0.1:48000")]
    idle = {f.identity for f in result.report.findings if f.local == "127.0.0.1:47001"}
    assert len(idle) >= 2 and len({netns for _, netns, _, _ in idle}) >= 2
    # Owners carry the container id and their workload.
    owners = {o.workload.pod: o for o in result.snapshot.owners.values() if o.workload.pod}
    assert owners["web-1"].container == node.web.container.container_id[:12]


def test_keepalive_audit_shows_each_namespace(node: Node) -> None:
    node.web.ns.run("sysctl", "-qw", "net.ipv4.tcp_keepalive_time=600")
    poller = Poller(config(node.host_root))
    try:
        result = poller.poll()
    finally:
        poller.close()
    audits = {(a.namespace, a.pod): a.report for a in result.namespace_sysctl}
    web, api = audits[("shop", "web-1")], audits[("shop", "api-1")]
    time_web, time_api = (r.entry("net.ipv4.tcp_keepalive_time") for r in (web, api))
    assert time_web is not None and time_api is not None
    assert (time_web.current, time_web.compliant) == (600, True)
    assert (time_api.current, time_api.compliant) == (7200, False)  # a new namespace's default
    assert api.entry("net.ipv4.tcp_max_orphans") is None  # a global sysctl is not audited per namespace


def test_namespace_churn_leaves_no_fd_behind(node: Node) -> None:
    poller = Poller(config(node.host_root))
    alive: list[subprocess.Popen[str]] = []
    try:
        poller.poll()
        poller.poll()
        baseline = fd_count()
        for _ in range(5):
            for child in alive:
                stop(child)
            alive = unshared_sleepers(20)
            result = poller.poll()
            assert result.snapshot.namespace_stats.failed == 0
        for child in alive:
            stop(child)
        alive = []
        poller.poll()
        poller.poll()
        # Namespaces of other tests may have gone meanwhile (their sockets closed too): never more fds.
        assert fd_count() <= baseline
    finally:
        for child in alive:
            stop(child)
        poller.close()


def test_daemon_metrics_per_pod(node: Node, tmp_path: Path) -> None:
    cfg = tmp_path / "tcpwatchd.toml"
    cfg.write_text(
        "[daemon]\npoll_interval_seconds = 0.5\n"
        "[exporter]\nport = 9816\n"
        '[sysctl]\nmode = "audit"\n'
        f'[namespaces]\nwatch = "all"\nhost_root = "{node.host_root}"\n'
        "[detect.close_wait]\nmin_age_seconds = 0\n"
    )
    with NetNS("tcpwnode") as host:
        host.run("sysctl", "-qw", "net.ipv4.tcp_keepalive_time=600")  # the node's own namespace: compliant
        host.run("sysctl", "-qw", "net.ipv4.tcp_keepalive_intvl=30")
        host.run("sysctl", "-qw", "net.ipv4.tcp_keepalive_probes=5")
        daemon = host.python("-m", "tcpwatchd", "run", "-c", str(cfg))
        try:
            wait_until(lambda: "tcpwatchd_sockets" in _scrape(host), timeout=30, what="metrics")
            wait_until(lambda: "web-1" in _scrape(host), timeout=30, what="the pods' series")
            got = _samples(_scrape(host))
        finally:
            stop(daemon)
    web: Counter[str] = Counter()
    for name, labels, value in got:
        if name == "tcpwatchd_sockets" and (labels["namespace"], labels["pod"]) == ("shop", "web-1"):
            web[labels["state"]] += int(value)
    assert web == ss_states(node.web.ns)
    leaked = [v for n, ls, v in got if n == "tcpwatchd_close_wait_leaked_sockets" and ls["pod"] == "web-1"]
    assert sum(leaked) == 1.0
    keepalive = {
        (ls["pod"], ls["netns"] == ""): v
        for n, ls, v in got
        if n == "tcpwatchd_sysctl_compliant" and ls["name"] == "net.ipv4.tcp_keepalive_time"
    }
    assert keepalive[("", True)] == 1.0  # the node's own namespace
    assert keepalive[("api-1", False)] == 0.0  # 7200 there
    modes = {ls["mode"]: v for n, ls, v in got if n == "tcpwatchd_network_namespaces"}
    assert modes["sockdiag"] >= 4
    aborts = {ls["pod"] for n, ls, _ in got if n == "tcpwatchd_kernel_tcp_aborts_total"}
    assert {"", "web-1", "api-1"} <= aborts


def _scrape(ns: NetNS) -> str:
    url = "http://127.0.0.1:9816/metrics"
    code = f"import urllib.request;print(urllib.request.urlopen({url!r},timeout=5).read().decode())"
    out = ns.run(sys.executable, "-c", code, timeout=20, check=False)
    return out.stdout if out.returncode == 0 else ""


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]
