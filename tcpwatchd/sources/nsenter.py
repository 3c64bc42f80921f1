"""One thread that enters other network namespaces, runs a short job there, and comes back.

setns(fd, CLONE_NEWNET) moves only the calling thread (kernel/nsproxy.c: the new nsproxy is the task's), and
whatever that thread then creates belongs to the namespace it is in: a socket keeps the namespace it was
created in for its whole life (sk_alloc, net/core/sock.c), and /proc/sys/net opened from that thread shows
that namespace's sysctls (net/sysctl_net.c, net_ctl_header_lookup uses current->nsproxy->net_ns). So one
dedicated thread, created once and reused, does all of it: it opens `<proc_root>/<pid>/ns/net`, checks with
fstat that this is still the namespace wanted (the pid may have exited and been reused), enters, runs the job,
and goes back home through an fd to its own namespace kept open since it started. Nothing else ever runs on
it; if it cannot go home it stops, and every later request fails fast instead of running in a foreign
namespace. Entering needs CAP_SYS_ADMIN (netns_install, net/core/net_namespace.c): without it, EPERM.

    >>> worker = NamespaceWorker()                                        # doctest: +SKIP
    >>> worker.run([Visit((1234,), NetnsId(4, 4026532281), read_value)])  # doctest: +SKIP
    [7200]
"""

from __future__ import annotations

import ctypes
import errno
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from tcpwatchd.sources.netns import NetnsId

CLONE_NEWNET = 0x40000000  # linux/sched.h
JOB_TIMEOUT = 30.0  # a bound on one batch of visits; the jobs are socket() and small reads


class NamespaceGone(OSError):
    """No listed process is in the namespace any more (they exited, or moved elsewhere)."""


@dataclass(frozen=True, slots=True)
class Visit:
    """Run `job()` inside the namespace `wanted`, entered through the first of `pids` still in it."""

    pids: Sequence[int]
    wanted: NetnsId
    job: Callable[[], Any]


def _libc_setns() -> Callable[[int, int], None]:
    native: Callable[[int, int], None] | None = getattr(os, "setns", None)  # Python 3.12+
    if native is not None:
        return native
    libc = ctypes.CDLL(None, use_errno=True)
    setns = libc.setns
    setns.argtypes = (ctypes.c_int, ctypes.c_int)
    setns.restype = ctypes.c_int

    def call(fd: int, nstype: int) -> None:
        if setns(fd, nstype) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return call


class NamespaceWorker:
    """The one thread that visits namespaces. `run` is thread-safe; visits run one after another."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self._proc_root = proc_root
        self._setns = _libc_setns()
        self._jobs: queue.SimpleQueue[tuple[Sequence[Visit], Future[list[Any]]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.broken = ""  # why the thread stopped ("" while it works)

    def run(self, visits: Sequence[Visit]) -> list[Any]:
        """Each visit's result, or the exception it raised (NamespaceGone, PermissionError for EPERM, ...)
        in its place. Raises RuntimeError when the thread is broken or does not answer in time."""
        if not visits:
            return []
        with self._lock:
            if self.broken:
                raise RuntimeError(f"the namespace thread is stopped: {self.broken}")
            if self._thread is None:
                self._thread = threading.Thread(target=self._main, name="tcpwatchd-netns", daemon=True)
                self._thread.start()
        done: Future[list[Any]] = Future()
        self._jobs.put((visits, done))
        try:
            return done.result(timeout=JOB_TIMEOUT)
        except TimeoutError:
            self.broken = self.broken or f"a batch of {len(visits)} visits took over {JOB_TIMEOUT:.0f}s"
            raise RuntimeError(self.broken) from None

    def stop(self) -> None:
        """Let the thread finish what is queued and end (closing its fd); later `run`s fail."""
        with self._lock:
            thread, self._thread = self._thread, None
            self.broken = self.broken or "stopped"
        if thread is None:
            return
        self._jobs.put(None)
        thread.join(timeout=JOB_TIMEOUT)

    def _main(self) -> None:
        try:
            home = os.open(self._self_ns(), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            self.broken = f"cannot open its own network namespace: {e}"
            self._drain()
            return
        home_id = _identity(home)
        while not self.broken:
            item = self._jobs.get()
            if item is None:
                break
            visits, done = item
            results: list[Any] = []
            for visit in visits:
                try:
                    results.append(self._visit(visit, home, home_id))
                except Exception as e:  # handed back in place of the result
                    results.append(e)
                if self.broken:
                    break
            done.set_result(results)
        os.close(home)
        self._drain()

    def _drain(self) -> None:
        """Fail whatever is queued behind a stop: callers get an error, never a visit."""
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[1].set_exception(RuntimeError(f"the namespace thread is stopped: {self.broken}"))

    def _visit(self, visit: Visit, home: int, home_id: NetnsId) -> Any:
        fd = self._open_namespace(visit.pids, visit.wanted)
        try:
            self._setns(fd, CLONE_NEWNET)
        finally:
            os.close(fd)
        try:
            return visit.job()
        finally:
            self._go_home(home, home_id)

    def _go_home(self, home: int, home_id: NetnsId) -> None:
        try:
            self._setns(home, CLONE_NEWNET)
            back = os.stat(self._self_ns())
            if NetnsId(back.st_dev, back.st_ino) != home_id:
                raise OSError(errno.EINVAL, "still in another namespace after setns")
        except OSError as e:
            self.broken = f"cannot return to its own network namespace: {e}"

    def _open_namespace(self, pids: Sequence[int], wanted: NetnsId) -> int:
        """An fd of `wanted`, through the first pid still in it; the fd pins the namespace until closed."""
        for pid in pids:
            try:
                fd = os.open(os.path.join(self._proc_root, str(pid), "ns", "net"), os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, ProcessLookupError):
                continue  # exited since the scan
            if _identity(fd) == wanted:
                return fd
            os.close(fd)  # the pid was reused by a process elsewhere, or it moved: not this namespace
        raise NamespaceGone(errno.ENOENT, f"no process left in net:[{wanted.ino}]")

    def _self_ns(self) -> str:
        return os.path.join(self._proc_root, "thread-self", "ns", "net")


def _identity(fd: int) -> NetnsId:
    st = os.fstat(fd)
    return NetnsId(st.st_dev, st.st_ino)
