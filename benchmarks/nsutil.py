"""A private network namespace for the benchmark, and bounded children inside it.

Only loopback exists in the namespace, so every byte the benchmark sends stays on 127.0.0.0/8 or ::1.
Sysctls are written inside the namespace only: the ones used here are per-netns (`struct netns_ipv4`,
include/net/netns/ipv4.h; `net.core.somaxconn` in `struct netns_core`), so the host's are never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent

# Per-netns sysctls the population needs (values are strings, as /proc/sys takes them).
NETNS_SYSCTLS = {
    "net.ipv4.ip_local_port_range": "1024 65535",  # more ephemeral ports per destination
    "net.core.somaxconn": "65535",  # listen() backlogs are clamped to this
    "net.ipv4.tcp_max_syn_backlog": "65535",
    # Orphaned FIN_WAIT2 sockets (the client side of a CLOSE_WAIT) live this long (tcp_fin_time(),
    # include/net/tcp.h): keep them for the whole run so the population does not shrink mid-measurement.
    "net.ipv4.tcp_fin_timeout": "3600",
}


class Namespace:
    """`with Namespace(log) as ns:` a fresh netns, lo up; on exit: children killed by pid, netns deleted."""

    def __init__(self, log: IO[str], prefix: str = "benchpoll") -> None:
        self.name = f"{prefix}{os.getpid()}x{time.monotonic_ns() % 100000}"
        self.children: list[subprocess.Popen[str]] = []
        self._log = log
        self._created = False
        self._fd = -1

    def __enter__(self) -> Namespace:
        _ip("netns", "add", self.name)
        self._created = True
        # Enter through our own fd, not the name: the namespace then outlives a stray `ip netns del` of the
        # name by someone else's cleanup, and it is freed once this fd and the children are gone.
        self._fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY | os.O_CLOEXEC)
        if self.run("readlink", "/proc/self/ns/net").stdout.strip() == os.readlink("/proc/self/ns/net"):
            raise RuntimeError("nsenter did not enter the benchmark namespace; refusing to touch sysctls")
        self.run("ip", "link", "set", "lo", "up")
        for key, value in NETNS_SYSCTLS.items():
            self.run("sysctl", "-q", "-w", f"{key}={value}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for child in self.children:
            stop(child)
        self.children.clear()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._created:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=60)
            self._created = False

    def cmd(self, *argv: str) -> list[str]:
        """argv run inside the namespace; nsenter execs it (no fork), so the child's pid is the program's."""
        return ["nsenter", f"--net=/proc/{os.getpid()}/fd/{self._fd}", "--", *argv]

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.cmd(*argv), capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} in {self.name} exited {done.returncode}: {done.stderr.strip()}"
            )
        return done

    def spawn(self, *argv: str) -> subprocess.Popen[str]:
        """A long-lived child in the namespace (stdin kept open: EOF tells it to exit); stderr to the log."""
        child = subprocess.Popen(
            self.cmd(*argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=python_env(),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.children.append(child)
        return child

    def python(self, script: str, *argv: str, timeout: float) -> str:
        """Run a benchmark script to completion inside the namespace; returns its stdout."""
        done = subprocess.run(
            self.cmd(sys.executable, str(BENCH_DIR / script), *argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=python_env(),
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{script} {' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
        return done.stdout


def python_env() -> dict[str, str]:
    """The environment for Python children: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def stop(child: subprocess.Popen[str], timeout: float = 30) -> None:
    """Kill one child by its own pid (its session has only itself: the children never fork)."""
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=timeout)
    for stream in (child.stdin, child.stdout):
        if stream is not None:
            stream.close()


def read_line(child: subprocess.Popen[str], deadline: float) -> str:
    """The child's next stdout line, or '' when it exits or the deadline passes."""
    import selectors

    assert child.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(child.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            return ""
        return child.stdout.readline().rstrip("\n")


def _die_with_parent() -> None:
    """In the forked child: SIGKILL when the driver dies; survives execve (prctl(2), PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG, include/uapi/linux/prctl.h


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=60)
