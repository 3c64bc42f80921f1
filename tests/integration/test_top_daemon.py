"""`tcpwatchd top` in a real terminal (tmux) against a REAL daemon watching a namespace with a real
CLOSE_WAIT leak; and `tcpwatchd snapshot --json`, which prints the daemon's API document."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tcpwatchd.top.document import parse_document
from tests.support.detect_pipeline import closing_clients, workload
from tests.support.netns import REPO, NetNS, wait_until
from tests.support.tmux import PROMPT, Tmux, require_tmux

pytestmark = pytest.mark.integration

CONFIG = """
[daemon]
poll_interval_seconds = 0.5
[sysctl]
mode = "off"
[detect.close_wait]
min_age_seconds = 0.5
"""


def api(ns: NetNS, query: str = "") -> dict[str, Any]:
    code = (
        "import urllib.request,sys;"
        f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9814/api/v1/snapshot{query}',timeout=5)"
        ".read().decode())"
    )
    out: dict[str, Any] = json.loads(ns.run(sys.executable, "-c", code, timeout=20).stdout)
    return out


def _leaking(ns: NetNS) -> bool:
    try:
        doc = api(ns, "?kind=close_wait")
    except Exception:  # not serving yet
        return False
    return any(p["process"] == "cw-leaky" and p["findings"].get("close_wait") == 3 for p in doc["processes"])


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[NetNS, Path]]:
    with NetNS() as ns:
        cfg = tmp_path / "tcpwatchd.toml"
        cfg.write_text(CONFIG)
        for port, mode, name in (("7001", "hold", "cw-leaky"), ("7002", "close", "cw-prompt")):
            workload(ns, "server", "--host", "127.0.0.1", "--port", port, "--mode", mode, "--name", name)
            closing_clients(ns, port)
        ns.python("-m", "tcpwatchd", "run", "-c", str(cfg))
        wait_until(lambda: _leaking(ns), timeout=30, interval=0.3, what="the daemon's API to show the leak")
        yield ns, cfg


def first_row_after_header(screen: str) -> str:
    lines = screen.split("\n")
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith(("PROCESS", "KIND")))
    return lines[header + 1]


def test_top_on_a_real_daemon_shows_the_leak_first_its_findings_a_filter_and_exits(
    daemon: tuple[NetNS, Path],
) -> None:
    ns, _cfg = daemon
    require_tmux()
    term = Tmux(110, 24, env={"PYTHONPATH": str(REPO)})
    try:
        term.run(f"ip netns exec {ns.name} {shlex.quote(sys.executable)} -m tcpwatchd top")
        screen = term.wait_for(lambda s: "cw-leaky" in s and "poll #" in s, "the process list", timeout=20)
        assert term.alternate_on()
        assert first_row_after_header(screen).startswith("cw-leaky"), screen

        term.send("Enter")
        screen = term.wait_for(lambda s: "127.0.0.1:7001" in s and "KIND" in s, "cw-leaky's findings")
        assert first_row_after_header(screen).split()[0] == "close_wait", screen
        assert "cw-leaky" in screen.split("\n")[0]

        term.send("Escape")
        term.wait_for(lambda s: "PROCESS" in s and "KIND" not in s, "the list again")
        term.type("/prompt")
        term.send("Enter")
        screen = term.wait_for(lambda s: "filter: prompt" in s and "cw-leaky" not in s, "the filter applied")
        assert first_row_after_header(screen).startswith("cw-prompt"), screen

        term.type("q")
        term.wait_for(lambda s: "poll #" not in s and PROMPT.strip() in s, "the shell back")
        assert not term.alternate_on()
        term.run("echo rc=$?")
        term.wait_for(lambda s: "rc=0" in s, "the exit status")
    finally:
        term.close()


def _shape(obj: Any) -> Any:
    """Keys and value types, recursively (lists by their first item)."""
    if isinstance(obj, dict):
        return {
            k: _shape(v) for k, v in obj.items() if k not in ("sockets", "findings") or isinstance(v, list)
        }
    if isinstance(obj, list):
        return [_shape(obj[0])] if obj else []
    return type(obj).__name__ if obj is not None else "null"


def test_snapshot_json_is_the_api_document(daemon: tuple[NetNS, Path]) -> None:
    ns, cfg = daemon
    out = ns.run(
        sys.executable, "-m", "tcpwatchd", "snapshot", "--json", "-c", str(cfg), "--kind", "close_wait"
    )
    printed = json.loads(out.stdout)
    served = api(ns, "?kind=close_wait&per_page=1000")
    assert "no daemon" not in out.stderr
    assert _shape(printed) == _shape(served)
    assert printed["filters"]["kind"] == "close_wait"
    assert [p["process"] for p in printed["processes"]] == ["cw-leaky"]
    assert {f["local"] for f in printed["findings"]} == {"127.0.0.1:7001"}
    parse_document(printed)  # top reads it too

    table = ns.run(sys.executable, "-m", "tcpwatchd", "snapshot", "-c", str(cfg), "--process", "cw-*").stdout
    assert "from daemon http://127.0.0.1:9814" in table
    assert table.splitlines()[1].startswith("cw-leaky") and "close_wait=3" in table.splitlines()[1]

    local = ns.run(sys.executable, "-m", "tcpwatchd", "snapshot", "--json", "--local", "-c", str(cfg))
    assert _shape(json.loads(local.stdout))["poll"] == _shape(served)["poll"]

    elsewhere = cfg.with_name("elsewhere.toml")
    elsewhere.write_text(CONFIG + "[exporter]\nport = 9899\n")  # no daemon answers there
    fallback = ns.run(sys.executable, "-m", "tcpwatchd", "snapshot", "-c", str(elsewhere))
    assert "no daemon answers at http://127.0.0.1:9899" in fallback.stderr
    assert "from local poll (no daemon answered at http://127.0.0.1:9899" in fallback.stdout
