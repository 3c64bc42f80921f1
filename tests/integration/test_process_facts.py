"""Process facts against `ls /proc/PID/fd` and `prlimit`, on a child with a low limit and open sockets."""

from __future__ import annotations

import subprocess

import pytest

from tcpwatchd.sources.process_facts import ProcessFactsCache
from tests.support.netns import NetNS, wait_line

pytestmark = pytest.mark.integration

CHILD = """
import resource, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (128, 4096))
srv = socket.create_server(("127.0.0.1", 7001))
held = []
for _ in range(40):
    c = socket.create_connection(("127.0.0.1", 7001)); a, _ = srv.accept(); held += [c, a]
print("READY", flush=True)
sys.stdin.readline()
"""


def test_open_fds_and_max_fds_match_ls_and_prlimit() -> None:
    with NetNS("tcpwfd") as ns:
        child = ns.python("-c", CHILD)
        wait_line(child, "READY")
        pid = _pid(child)
        facts = ProcessFactsCache().facts([(pid, 0.0)])[pid]
        ls = subprocess.run(
            f"ls /proc/{pid}/fd | wc -l", shell=True, capture_output=True, text=True, check=True
        )
        soft = subprocess.run(
            ["prlimit", "--pid", str(pid), "--nofile", "--output", "SOFT", "--noheadings"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    assert facts.open_fds == int(ls.stdout) >= 81  # 80 connected sockets and the listener
    assert facts.max_fds == int(soft.stdout) == 128


def _pid(child: subprocess.Popen[str]) -> int:
    """`ip netns exec` execs the command (no fork): the Popen pid is the python child's."""
    with open(f"/proc/{child.pid}/comm") as f:
        assert f.read().startswith("python"), "ip netns exec did not exec the child"
    return child.pid
