"""Run one prober step in this process (e.g. under setpriv without CAP_SYS_PTRACE) and print its events.

python -m tests.support.probe_child <server pid> <server name> <server port>
"""

from __future__ import annotations

import sys
import time

from tcpwatchd.actions.probe_types import Candidate, ProbeSettings
from tcpwatchd.actions.prober import Prober
from tcpwatchd.actions.system_ops import SystemOps
from tcpwatchd.allowlist import parse_allowlist
from tcpwatchd.model import TcpState
from tcpwatchd.sources.sockdiag import SockDiagReader


def main() -> None:
    pid, name, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    sockets = list(SockDiagReader().dump().sockets)
    cands = [
        Candidate(s, pid, name)
        for s in sockets
        if s.state == TcpState.ESTABLISHED and s.local_port == port and s.inode
    ]
    prober = Prober(ProbeSettings(reap=False, allow=parse_allowlist(["process:*"])), SystemOps())
    step = prober.step(time.monotonic(), cands, {s.cookie: s for s in sockets if s.cookie})
    for event in step.events:
        print(event.message(), flush=True)


if __name__ == "__main__":
    main()
