"""A pids cgroup with a limit, as systemd's TasksMax or a pod's pid limit sets one (cgroup v2 or v1)."""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from pathlib import Path
from types import TracebackType

_counter = itertools.count()
CGROUP = Path("/sys/fs/cgroup")


def _pids_root() -> Path | None:
    """Where a child cgroup with a pids.max can be made: the v2 root, or the v1 pids hierarchy."""
    controllers = CGROUP / "cgroup.controllers"
    if controllers.exists() and "pids" in controllers.read_text().split():
        subtree = CGROUP / "cgroup.subtree_control"
        if "pids" not in subtree.read_text().split():
            with contextlib.suppress(OSError):
                subtree.write_text("+pids")
        return CGROUP if "pids" in subtree.read_text().split() else None
    v1 = CGROUP / "pids"
    return v1 if (v1 / "cgroup.procs").exists() else None


def why_no_pids_cgroup() -> str:
    if os.geteuid() != 0:
        return "needs root (creates a cgroup)"
    if _pids_root() is None:
        return "no writable pids cgroup controller (cgroup v2 with pids, or v1 /sys/fs/cgroup/pids)"
    return ""


class PidsLimit:
    """`with PidsLimit(64) as lim: lim.add(pid)`; processes are moved back and the cgroup removed on exit."""

    def __init__(self, max_pids: int) -> None:
        root = _pids_root()
        assert root is not None, why_no_pids_cgroup()
        self.root = root
        self.path = root / f"tcpwatchd-test-{os.getpid()}-{next(_counter)}"
        self.max_pids = max_pids

    def __enter__(self) -> PidsLimit:
        self.path.mkdir()
        (self.path / "pids.max").write_text(str(self.max_pids))
        return self

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def events_max(self) -> int:
        """How many forks/clones the limit refused (v2 pids.events; v1 too on kernels >= 4.x)."""
        events = self.path / "pids.events"
        if not events.exists():
            return -1
        return int(dict(line.split() for line in events.read_text().splitlines()).get("max", "0"))

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        deadline = time.monotonic() + 10
        while True:
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (self.root / "cgroup.procs").write_text(pid)
            try:
                self.path.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
