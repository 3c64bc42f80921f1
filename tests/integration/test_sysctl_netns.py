"""`tcpwatchd audit` and `SysctlPolicy` against the real kernel, inside private network namespaces only.

The keepalive sysctls are per network namespace, so every write here lands in a namespace the test made;
an autouse fixture checks that the host's own values are the same after each test as before it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcpwatchd.sysctl.catalog import CATALOG, Scope
from tests.support.netns import REPO, NetNS

pytestmark = pytest.mark.integration

KEEPALIVE = {
    "net.ipv4.tcp_keepalive_time": 600,
    "net.ipv4.tcp_keepalive_intvl": 30,
    "net.ipv4.tcp_keepalive_probes": 5,
}
# Bind /proc/sys over itself read-only, in a private mount namespace: the host's /proc is untouched.
TRAVERSAL = "net.ipv4.tcp_keepalive_intvl/../../../kernel/panic"
READ_ONLY_PROC_SYS = 'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$@"'


def _host_values() -> dict[str, str]:
    """The host's sysctls (read only), to prove no test changed them."""
    out = {}
    for name in CATALOG:
        path = Path("/proc/sys", *name.split("."))
        out[name] = path.read_text() if path.exists() else "<absent>"
    return out


@pytest.fixture(autouse=True)
def _host_untouched() -> Iterator[None]:
    before = _host_values()
    yield
    assert _host_values() == before, "a test changed the host's own sysctls"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(prefix: list[str], *argv: str) -> subprocess.CompletedProcess[str]:
    """`<prefix> python -m tcpwatchd <argv>`, bounded."""
    cmd = [*prefix, sys.executable, "-m", "tcpwatchd", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env(), cwd=REPO)


def _config(tmp_path: Path, desired: dict[str, object], mode: str = "audit") -> str:
    lines = ["[sysctl]", f'mode = "{mode}"', "[sysctl.desired]"]
    lines += [f"{json.dumps(name)} = {json.dumps(value)}" for name, value in desired.items()]
    path = tmp_path / "tcpwatchd.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _ns_value(ns: NetNS, name: str) -> int:
    return int(ns.run("cat", str(Path("/proc/sys", *name.split(".")))).stdout)


def test_a_fresh_namespace_starts_at_the_kernel_defaults(tmp_path: Path) -> None:
    result = _run(["unshare", "-n"], "audit", "--json", "-c", _config(tmp_path, {}))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    for entry in doc["sysctls"]:
        spec = CATALOG[entry["name"]]
        if spec.scope is Scope.GLOBAL:
            assert entry["status"] == "absent", entry  # only the initial namespace has it
        elif entry["status"] != "absent":  # tcp_rto_max_ms is absent before Linux 6.15
            assert entry["current"] == spec.kernel_default, entry
    assert doc["dead_peer_idle_detection_seconds"] == 7875
    assert doc["dead_peer_inflight_detection_seconds"] == pytest.approx(924.6)


def test_audit_drift_then_apply_then_compliant(tmp_path: Path) -> None:
    cfg = _config(tmp_path, KEEPALIVE)
    with NetNS() as ns:
        drift = _run(ns.cmd(), "audit", "--json", "-c", cfg)
        assert drift.returncode == 1, drift.stderr
        statuses = {s["name"]: s["status"] for s in json.loads(drift.stdout)["sysctls"]}
        assert [statuses[n] for n in KEEPALIVE] == ["drift", "drift", "drift"]

        applied = _run(ns.cmd(), "audit", "--apply", "-c", cfg)
        assert applied.returncode == 0, applied.stderr
        assert "wrote net.ipv4.tcp_keepalive_time: 7200 -> 600" in applied.stdout
        assert {name: _ns_value(ns, name) for name in KEEPALIVE} == KEEPALIVE

        again = _run(ns.cmd(), "audit", "--json", "-c", cfg)
        assert again.returncode == 0, again.stderr
        doc = json.loads(again.stdout)
        assert doc["compliant"] is True and doc["dead_peer_idle_detection_seconds"] == 750


@pytest.mark.parametrize(
    ("bad_name", "bad_value", "shown"),
    [
        ("net.ipv4.tcp_keepalive_probes", 500, "net.ipv4.tcp_keepalive_probes"),
        (TRAVERSAL, 1, TRAVERSAL),
        ("kernel.panic", 1, "kernel.panic"),
        ("net.ipv4.tcp_fin_timeout", 0, "net.ipv4.tcp_fin_timeout"),
    ],
)  # fmt: skip
def test_a_bad_entry_is_refused_and_nothing_is_written(
    tmp_path: Path, bad_name: str, bad_value: object, shown: str
) -> None:
    cfg = _config(tmp_path, {"net.ipv4.tcp_keepalive_time": 600, bad_name: bad_value})
    with NetNS() as ns:
        result = _run(ns.cmd(), "audit", "--apply", "-c", cfg)
        assert result.returncode == 2, result.stdout + result.stderr
        assert shown in result.stderr
        assert _ns_value(ns, "net.ipv4.tcp_keepalive_time") == 7200


def test_read_only_proc_sys_fails_the_write_and_audit_keeps_working(tmp_path: Path) -> None:
    cfg = _config(tmp_path, KEEPALIVE)
    with NetNS() as ns:
        read_only = ns.cmd("unshare", "-m", "--propagation", "private", "sh", "-c", READ_ONLY_PROC_SYS, "sh")
        applied = _run(read_only, "audit", "--apply", "-c", cfg)
        assert applied.returncode == 2, applied.stdout + applied.stderr
        assert (
            "net.ipv4.tcp_keepalive_time: cannot write 600: Read-only file system (EROFS)" in applied.stderr
        )
        audit = _run(read_only, "audit", "--json", "-c", cfg)
        assert audit.returncode == 1, audit.stderr
        assert json.loads(audit.stdout)["errors"] == []
        assert _ns_value(ns, "net.ipv4.tcp_keepalive_time") == 7200


ENFORCE_CHILD = """
import json, logging, sys
from tcpwatchd.config import SysctlConfig
from tcpwatchd.sysctl.enforce import SysctlPolicy
from tcpwatchd.outputs.sysctl_metrics import sysctl_metrics

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
policy = SysctlPolicy(SysctlConfig(mode="enforce", desired=json.loads(sys.argv[1])))

def step(label, report):
    compliant = {s.labels["name"]: s.value for m in sysctl_metrics(report) for s in m.samples
                 if s.name == "tcpwatchd_sysctl_compliant"}
    writes = [[w.name, w.old, w.new] for w in report.writes]
    print(json.dumps({"step": label, "exit": report.exit_code, "compliant": compliant, "writes": writes}))

step("audit", policy.check())
step("enforce", policy.enforce())
with open("/proc/sys/net/ipv4/tcp_keepalive_time", "w") as f:  # behind the policy's back
    f.write("7200\\n")
step("tampered", policy.check())
step("re-enforce", policy.enforce())
"""


def test_enforce_reapplies_a_value_changed_behind_its_back() -> None:
    with NetNS() as ns:
        cmd = ns.cmd(sys.executable, "-c", ENFORCE_CHILD, json.dumps(KEEPALIVE))
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env(), cwd=REPO)
        assert result.returncode == 0, result.stderr
        steps = {d["step"]: d for d in map(json.loads, result.stdout.splitlines())}
        assert _ns_value(ns, "net.ipv4.tcp_keepalive_time") == 600
    assert steps["audit"]["exit"] == 1 and set(steps["audit"]["compliant"].values()) == {0.0}
    assert steps["enforce"]["exit"] == 0 and set(steps["enforce"]["compliant"].values()) == {1.0}
    assert len(steps["enforce"]["writes"]) == 3
    assert steps["tampered"]["exit"] == 1
    assert steps["tampered"]["compliant"]["net.ipv4.tcp_keepalive_time"] == 0.0
    assert steps["re-enforce"]["writes"] == [["net.ipv4.tcp_keepalive_time", 7200, 600]]
    assert steps["re-enforce"]["exit"] == 0 and set(steps["re-enforce"]["compliant"].values()) == {1.0}
    logged = [line for line in result.stderr.splitlines() if line.startswith("WARNING set sysctl")]
    assert (
        logged.count("WARNING set sysctl net.ipv4.tcp_keepalive_time from 7200 to 600 (enforcing the config)")
        == 2
    )
    assert len(logged) == 4
