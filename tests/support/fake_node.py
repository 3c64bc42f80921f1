"""A fake container node for tests: processes moved into cgroups whose paths have the containerd, cgroupfs
and Docker shapes (under a cgroup v1 controller hierarchy, e.g. /sys/fs/cgroup/pids), and the node's name
files (/var/log/containers, /var/log/pods, Docker's config.v2.json) under a temporary host root.

Every cgroup made is removed on close (after its processes are moved back to the hierarchy's root).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

CONTROLLERS = ("pids", "cpu", "memory")


def controller_root() -> Path | None:
    """A cgroup v1 hierarchy we can make child cgroups in, or None."""
    for name in CONTROLLERS:
        root = Path("/sys/fs/cgroup") / name
        if (root / "cgroup.procs").exists() and os.access(root, os.W_OK):
            return root
    return None


@dataclass(frozen=True, slots=True)
class Container:
    namespace: str  # Kubernetes names; "" for a plain Docker container
    pod: str
    name: str
    container_id: str
    pod_uid: str
    cgroup: str  # the path under the controller root


def pod_container(namespace: str, pod: str, name: str, shape: str) -> Container:
    """A pod's container with a cgroup path of the given shape: "containerd" (systemd driver) or
    "cgroupfs" (runtime not named)."""
    cid, uid = uuid.uuid4().hex * 2, str(uuid.uuid4())
    if shape == "containerd":
        slice_ = f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice"
        path = f"/kubepods.slice/kubepods-besteffort.slice/{slice_}/cri-containerd-{cid}.scope"
    else:
        path = f"/kubepods/besteffort/pod{uid}/{cid}"
    return Container(namespace, pod, name, cid, uid, path)


def docker_container(name: str) -> Container:
    cid = uuid.uuid4().hex * 2
    return Container("", "", name, cid, "", f"/docker/{cid}")


class FakeNode:
    def __init__(self, host_root: Path, controller: Path) -> None:
        self.host_root = host_root
        self._controller = controller
        self._made: list[Path] = []
        for sub in ("var/log/containers", "var/log/pods", "var/lib/docker/containers"):
            (host_root / sub).mkdir(parents=True, exist_ok=True)

    def add(self, c: Container, pid: int) -> None:
        """Write the node's files for `c` and move `pid` into its cgroup."""
        if c.pod:
            pod_dir = self.host_root / "var/log/pods" / f"{c.namespace}_{c.pod}_{c.pod_uid}"
            (pod_dir / c.name).mkdir(parents=True, exist_ok=True)
            link = (
                self.host_root / "var/log/containers" / f"{c.pod}_{c.namespace}_{c.name}-{c.container_id}.log"
            )
            link.symlink_to(pod_dir / c.name / "0.log")
        else:
            state = self.host_root / "var/lib/docker/containers" / c.container_id
            state.mkdir(parents=True)
            (state / "config.v2.json").write_text(
                json.dumps({"Name": f"/{c.name}", "Config": {"Labels": {}}})
            )
        path = self._controller / c.cgroup.lstrip("/")
        parents = [
            p for p in [path, *path.parents] if p != self._controller and self._controller in p.parents
        ]
        for p in reversed(parents):
            if not p.exists():
                p.mkdir()
                self._made.append(p)
        (path / "cgroup.procs").write_text(str(pid))

    def close(self) -> None:
        for p in reversed(self._made):  # deepest first
            with contextlib.suppress(OSError):
                for pid in (p / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (self._controller / "cgroup.procs").write_text(pid)
            deadline = time.monotonic() + 5
            while p.exists() and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    p.rmdir()
                if p.exists():
                    time.sleep(0.05)
        self._made.clear()
