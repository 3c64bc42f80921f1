"""Per-state, per-process counts from `tcpwatchd snapshot` equal what `ss -tanp` reports, from both sources.

The population (tests/support/population.py) runs in a private namespace: several named processes,
listeners shared after fork, established pairs over IPv4 and IPv6, CLOSE_WAIT, FIN_WAIT2 orphans,
TIME_WAIT, and a connection waiting in an accept queue (no owner).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.netns import REPO, NetNS, wait_line

pytestmark = pytest.mark.integration

SS_STATES = {
    "ESTAB": "established",
    "SYN-SENT": "syn_sent",
    "SYN-RECV": "syn_recv",
    "FIN-WAIT-1": "fin_wait1",
    "FIN-WAIT-2": "fin_wait2",
    "TIME-WAIT": "time_wait",
    "UNCONN": "close",
    "CLOSE-WAIT": "close_wait",
    "LAST-ACK": "last_ack",
    "LISTEN": "listen",
    "CLOSING": "closing",
}
USER = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=\d+\)')

Key = tuple[str, str, int]  # (state, process name, pid); ("...", "", 0) for sockets with no owner


@pytest.fixture(scope="module")
def population() -> Iterator[NetNS]:
    with NetNS() as ns:
        child = ns.python(str(REPO / "tests/support/population.py"))
        wait_line(child, "READY", timeout=30)
        yield ns


def _start_key(pid: int) -> tuple[int, int]:
    """The same order tcpwatchd uses for shared sockets: start time in ticks, then pid."""
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return int(raw[raw.rindex(b")") + 2 :].split()[19]), pid


def by_name(counts: Counter[Key]) -> Counter[tuple[str, str]]:
    """(state, process name): the API's identity of a process (pre-fork workers share one name)."""
    out: Counter[tuple[str, str]] = Counter()
    for (state, name, _pid), n in counts.items():
        out[(state, name)] += n
    return out


def ss_counts(ns: NetNS) -> Counter[Key]:
    out = ns.run("ss", "-tanpH").stdout
    counts: Counter[Key] = Counter()
    for line in out.splitlines():
        state = SS_STATES[line.split()[0]]
        users = [(name, int(pid)) for name, pid in USER.findall(line)]
        if users:
            name, pid = min(users, key=lambda u: _start_key(u[1]))
            counts[(state, name, pid)] += 1
        else:
            counts[(state, "", 0)] += 1
    return counts


def tcpwatchd_counts(
    ns: NetNS, tmp_path: Path, source: str
) -> tuple[Counter[tuple[str, str]], dict[str, Any]]:
    cfg = tmp_path / f"{source}.toml"
    # ss -tanp sees this namespace only: so must tcpwatchd (the machine's other namespaces are others').
    cfg.write_text(f'[daemon]\nsource = "{source}"\n[sysctl]\nmode = "off"\n[namespaces]\nwatch = "own"\n')
    proc = ns.run(sys.executable, "-m", "tcpwatchd", "snapshot", "--json", "--local", "-c", str(cfg))
    data = json.loads(proc.stdout)
    counts: Counter[tuple[str, str]] = Counter()
    for p in data["processes"]:
        for state, n in p["sockets"].items():
            counts[(state, p["process"])] += n
    return counts, data


@pytest.mark.parametrize("source", ["sockdiag", "procnet"])
def test_counts_match_ss(population: NetNS, tmp_path: Path, source: str) -> None:
    expected = ss_counts(population)
    got, data = tcpwatchd_counts(population, tmp_path, source)
    assert data["poll"]["source"] == source
    assert got == by_name(expected)
    # The population really has what we claim it has.
    states = {k[0] for k in expected}
    assert {"listen", "established", "close_wait", "fin_wait2", "time_wait"} <= states
    names = {k[1] for k in expected}
    assert {"srv-alpha", "cli-beta", "pf-master"} <= names
    assert ("established", "", 0) in expected  # waiting in pf's accept queue: no owner yet


def test_snapshot_table_is_readable(population: NetNS, tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text('[sysctl]\nmode = "off"\n')
    out = population.run(sys.executable, "-m", "tcpwatchd", "snapshot", "--local", "-c", str(cfg)).stdout
    header = out.splitlines()[0].split()
    assert header[0] == "PROCESS" and "CLOSE_WAIT" in header and "POD" not in header
    assert any(line.startswith("srv-alpha") for line in out.splitlines())
    assert "(no process)" in out


def test_not_root_degrades_to_partial_attribution(population: NetNS, tmp_path: Path) -> None:
    """As nobody, other processes' fd links are unreadable: counts stay right, attribution is partial.

    CAP_DAC_READ_SEARCH is kept (ambient) only so that nobody can reach the interpreter wherever CI put
    it; it lists /proc/<pid>/fd but reading the links still needs ptrace access, which nobody lacks.
    """
    cfg = tmp_path / "nobody.toml"
    cfg.write_text('[sysctl]\nmode = "off"\n')
    proc = population.run(
        "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
        "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
        sys.executable, "-m", "tcpwatchd", "snapshot", "--json", "--local", "-c", str(cfg),
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert "attribution is partial" in proc.stderr
    expected = ss_counts(population)
    assert sum(p["sockets_total"] for p in data["processes"]) == sum(expected.values())
    assert [p["process"] for p in data["processes"]] == [""]  # nothing attributed


def test_ss_and_population_agree_on_total(population: NetNS) -> None:
    """Guard against a vacuous comparison: the namespace really holds a couple of dozen sockets."""
    out = subprocess.run(
        ["ip", "netns", "exec", population.name, "ss", "-tanH"], capture_output=True, text=True, check=True
    ).stdout
    assert len(out.splitlines()) >= 20
