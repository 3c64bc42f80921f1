"""Integration-test helpers: the polled pipeline (`Watch`) and workload processes inside a namespace."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.support.netns import NetNS, wait_line


@dataclass(frozen=True)
class Poll:
    """One poll as the driver printed it (see tests/support/detect_driver.py)."""

    at: float  # monotonic, the same clock as the test's time.monotonic()
    raw: dict[str, Any]

    def findings(self, kind: str, process: str | None = None) -> list[dict[str, Any]]:
        return [
            f
            for f in self.raw["findings"]
            if f["kind"] == kind and (process is None or f["process"] == process)
        ]

    def remotes(self, kind: str, process: str | None = None) -> set[str]:
        return {f["remote"] for f in self.findings(kind, process)}

    def gauge(self, metric: str, label: str) -> float | None:
        """The sample's value; None when the series is absent."""
        value = self.raw["metrics"].get(metric, {}).get(label)
        return None if value is None else float(value)

    def sockets(self, process: str) -> list[dict[str, Any]]:
        return [s for s in self.raw["sockets"] if s["process"] == process]

    @property
    def logged(self) -> list[dict[str, Any]]:
        return list(self.raw["logged"])


class Watch:
    """tcpwatchd's poller running in `ns`, polled when the test says so."""

    def __init__(self, ns: NetNS, detect: dict[str, Any], **sections: Any) -> None:
        config = {"detect": detect, **sections}
        self.child = ns.python("-m", "tests.support.detect_driver", json.dumps(config))
        wait_line(self.child, "READY", timeout=30)
        self.polls: list[Poll] = []

    def poll(self) -> Poll:
        assert self.child.stdin is not None
        self.child.stdin.write("poll\n")
        self.child.stdin.flush()
        line = wait_line(self.child, "REPORT ", timeout=30)
        raw = json.loads(line[len("REPORT ") :])
        p = Poll(at=raw["at"], raw=raw)
        self.polls.append(p)
        return p

    def poll_for(self, seconds: float, interval: float) -> list[Poll]:
        """Poll every `interval` for `seconds` (bounded); returns those polls."""
        out = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            out.append(self.poll())
            time.sleep(interval)
        return out

    def poll_until(self, done: Callable[[Poll], bool], timeout: float, interval: float, what: str) -> Poll:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.poll()
            if done(p):
                return p
            time.sleep(interval)
        raise AssertionError(f"tcpwatchd never saw {what} within {timeout}s")

    def logged(self) -> list[dict[str, Any]]:
        """Every line the announcer logged so far."""
        return [line for p in self.polls for line in p.logged]


def workload(ns: NetNS, *argv: str) -> tuple[subprocess.Popen[str], str]:
    """Start tests/support/detect_workload.py in `ns`; returns the child and the rest of its READY line."""
    child = ns.python("-m", "tests.support.detect_workload", *argv)
    line = wait_line(child, "READY", timeout=20)
    return child, line[len("READY") :].strip()


def closing_clients(ns: NetNS, port: str) -> None:
    """Three clients of 127.0.0.1:`port` that send 10 bytes and close: a server in "hold" mode is left
    with three CLOSE_WAIT sockets, one in "close" mode with none."""
    workload(
        ns, "client", "127.0.0.1", port, "--count", "3", "--send", "10", "--close", "--name", "cw-client"
    )


def tell(child: subprocess.Popen[str], command: str, expect: str = "") -> None:
    assert child.stdin is not None
    child.stdin.write(command + "\n")
    child.stdin.flush()
    if expect:
        wait_line(child, expect, timeout=20)
