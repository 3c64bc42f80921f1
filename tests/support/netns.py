"""Private network namespaces for integration tests, and bounded child processes inside them.

Traffic stays inside: loopback, or veth hosts in 198.18.0.0/15. Every child is killed by its own pid
when the namespace is torn down.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

_counter = itertools.count()
REPO = Path(__file__).resolve().parents[2]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


class NetNS:
    """`with NetNS() as ns:` a fresh named namespace with lo up; deleted (children killed) on exit."""

    def __init__(self, prefix: str = "tcpw") -> None:
        self.name = f"{prefix}{os.getpid()}x{next(_counter)}"
        self.children: list[subprocess.Popen[str]] = []

    def __enter__(self) -> NetNS:
        _ip("netns", "add", self.name)
        try:
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:  # __exit__ is not called when __enter__ fails: never leave the name behind
            self.close()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for child in self.children:
            stop(child)
        self.children.clear()
        # Deleting can fail while killed children are still releasing the namespace: retry, bounded.
        deadline = time.monotonic() + 10
        while True:
            gone = subprocess.run(
                ["ip", "netns", "del", self.name], capture_output=True, text=True, timeout=20
            )
            if gone.returncode == 0 or "No such file" in gone.stderr or time.monotonic() > deadline:
                return
            time.sleep(0.1)

    def cmd(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(*argv), capture_output=True, text=True, timeout=timeout, check=check)

    def spawn(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start a child in the namespace; it is killed (by pid) when the namespace closes."""
        child = subprocess.Popen(
            self.cmd(*argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.children.append(child)
        return child

    def python(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        full_env = dict(os.environ if env is None else env)
        full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
        return self.spawn(sys.executable, *argv, env=full_env)


def wait_line(child: subprocess.Popen[str], expect: str, timeout: float = 20) -> str:
    """Read the child's stdout until a line starts with `expect`; fail (with its stderr) otherwise."""
    assert child.stdout is not None
    deadline = time.monotonic() + timeout
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(child.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = child.stdout.readline()
            if not line:
                break
            if line.startswith(expect):
                return line.rstrip("\n")
    finally:
        sel.close()
    # Kill first (by pid), read what it said, then release its streams.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=5)
    err = child.stderr.read() if child.stderr else ""
    stop(child)
    raise AssertionError(f"child never printed {expect!r} within {timeout}s; stderr:\n{err}")


def stop(child: subprocess.Popen[str], timeout: float = 5) -> None:
    """Kill a child and its session by its own pid; never by name."""
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=timeout)
    for stream in (child.stdin, child.stdout, child.stderr):
        if stream is not None:
            stream.close()


def wait_until(
    predicate: object, timeout: float = 20, interval: float = 0.1, what: str = "condition"
) -> None:
    """Poll `predicate()` until true, bounded by `timeout`."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def veth(ns_a: NetNS, addr_a: str, ns_b: NetNS, addr_b: str, prefix: int = 24) -> tuple[str, str]:
    """Join two namespaces with a veth pair (addresses in 198.18.0.0/15); returns the two link names."""
    n = next(_counter)
    a, b = f"va{os.getpid() % 10000}x{n}", f"vb{os.getpid() % 10000}x{n}"
    _ip("link", "add", a, "netns", ns_a.name, "type", "veth", "peer", "name", b, "netns", ns_b.name)
    for ns, link, addr in ((ns_a, a, addr_a), (ns_b, b, addr_b)):
        _ip("-n", ns.name, "addr", "add", f"{addr}/{prefix}", "dev", link)
        _ip("-n", ns.name, "link", "set", link, "up")
    return a, b


def unshared_sleepers(count: int) -> list[subprocess.Popen[str]]:
    """`count` children each in a network namespace of its own (`unshare -n sleep 30`), returned once
    every one has left ours; the caller stops them by pid (`stop`)."""
    children = [
        subprocess.Popen(["unshare", "-n", "sleep", "30"], start_new_session=True, text=True)
        for _ in range(count)
    ]
    own = os.stat("/proc/self/ns/net").st_ino
    for child in children:
        path = f"/proc/{child.pid}/ns/net"
        wait_until(lambda p=path: os.stat(p).st_ino != own, what="unshare")
    return children


def fd_count() -> int:
    """File descriptors this process holds now."""
    return len(os.listdir("/proc/self/fd"))
