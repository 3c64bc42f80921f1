"""Driving the prober against real sockets in test namespaces: dumps, candidates, the server's own view."""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tcpwatchd.actions.probe_types import Action, Candidate, ProbeEvent, Result, StepResult
from tcpwatchd.actions.prober import Prober
from tcpwatchd.model import Socket, TcpState
from tcpwatchd.sources.sockdiag import SockDiagReader
from tests.support.netns import NetNS, wait_line

CLONE_NEWNET = 0x40000000


def dump_in(ns: NetNS) -> list[Socket]:
    """Every TCP socket of `ns`, from sock_diag, read on a thread that entered the namespace."""
    out: list[Socket] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{ns.name}", os.O_RDONLY)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            out.extend(SockDiagReader().dump().sockets)
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=10)
    if failure:
        raise failure[0]
    return out


@dataclass
class Server:
    """The probe workload's server in `ns`, and what it says about its own sockets."""

    ns: NetNS
    host: str
    port: int
    name: str
    child: subprocess.Popen[str] = field(init=False)

    def __post_init__(self) -> None:
        self.child = self.ns.python(
            "-m", "tests.support.probe_workload", "server", self.host, str(self.port), "--name", self.name
        )
        wait_line(self.child, "READY")

    def accepted(self) -> str:
        return wait_line(self.child, "ACCEPT").split()[1]

    def ask(self, command: str) -> dict[str, str]:
        """`opts` or `recv`: peer -> the answer, read inside the owner process."""
        assert self.child.stdin is not None
        self.child.stdin.write(command + "\n")
        self.child.stdin.flush()
        answers: dict[str, str] = {}
        assert self.child.stdout is not None
        while True:
            # readline, not select: the answer's lines arrive together and sit in the stream's buffer.
            line = self.child.stdout.readline().rstrip("\n")
            assert line, f"the server exited before answering {command!r}"
            if line == f"END {command}":
                return answers
            _tag, peer, rest = line.split(" ", 2)
            answers[peer] = rest


def client(ns: NetNS, server: Server, bind: str, bind_port: int) -> subprocess.Popen[str]:
    child = ns.python(
        "-m", "tests.support.probe_workload", "client", server.host, str(server.port),
        "--bind", bind, "--bind-port", str(bind_port), "--name", "pb-client",
    )  # fmt: skip
    wait_line(child, "READY")
    return child


def candidates(server: Server, superseded: bool = False) -> Callable[[list[Socket]], list[Candidate]]:
    """The server's ESTABLISHED connections, as the phantom detector would hand them over."""

    def pick(sockets: list[Socket]) -> list[Candidate]:
        return [
            Candidate(sock, server.child.pid, server.name, superseded=superseded)
            for sock in sockets
            if sock.state == TcpState.ESTABLISHED and sock.local_port == server.port and sock.inode
        ]

    return pick


def drive(
    prober: Prober,
    ns: NetNS,
    pick: Callable[[list[Socket]], list[Candidate]],
    timeout: float = 12,
    interval: float = 0.25,
) -> list[ProbeEvent]:
    """Poll `ns` and step the prober until no probe is in flight (after one was armed); every event."""
    events: list[ProbeEvent] = []
    deadline = time.monotonic() + timeout
    armed = False
    while time.monotonic() < deadline:
        now = time.monotonic()
        sockets = dump_in(ns)
        step: StepResult = prober.step(now, pick(sockets), {s.cookie: s for s in sockets if s.cookie})
        events += step.events
        armed = armed or any(e.action is Action.ARMED for e in step.events)
        if (armed and step.summary.in_flight == 0) or (any(e.result for e in step.events) and not armed):
            return events
        time.sleep(interval)
    raise AssertionError(f"the prober never finished within {timeout}s: {events}")


def resolved(events: list[ProbeEvent]) -> list[ProbeEvent]:
    return [e for e in events if e.action is Action.RESOLVED]


def results(events: list[ProbeEvent]) -> list[Result | None]:
    return [e.result for e in resolved(events)]
