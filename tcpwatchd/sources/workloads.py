"""Where each owner runs: its container (from /proc/<pid>/cgroup) and that container's Kubernetes or Docker
names (sources/podnames.py), attached to the poll's `Owner`s as a `Workload`.

A process's container does not change, so its `ContainerIdentity` is read once per (pid, start time) and
kept while the process lives (bounded: entries of processes no poll attributes any more are dropped). Names
are looked up every poll (a dict lookup): the kubelet may write a container's log symlink after its process
started, and the name then appears on the next poll. A container whose names are not found keeps empty
labels and is counted as unresolved.

    >>> namer = Workloads(proc_root="/proc", host_root="/")              # doctest: +SKIP
    >>> namer.refresh(); namer.label(owners)[inode].workload             # doctest: +SKIP
    Workload(namespace='shop', pod='web-7d4b9', container='nginx')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from tcpwatchd.model import NO_WORKLOAD, Owner, Workload
from tcpwatchd.sources.containers import ContainerIdentity, PodIdentity
from tcpwatchd.sources.podnames import NameStats, PodNames, read_container

MAX_PROCESSES = 65_536  # cached identities; a node runs far fewer container processes than this


def workload_of(names: PodIdentity | None) -> Workload:
    """>>> workload_of(PodIdentity("shop", "web-7d4b9", "nginx")).pod
    'web-7d4b9'
    """
    return Workload(names.namespace, names.pod, names.container) if names else NO_WORKLOAD


class Workloads:
    """Owner → its workload names, and a namespace's pod. One per taker; used from the poller thread."""

    def __init__(self, proc_root: str = "/proc", host_root: str = "/") -> None:
        self._proc_root = proc_root
        self._names = PodNames(host_root)
        self._containers: dict[tuple[int, float], ContainerIdentity | None] = {}
        self._last: tuple[Mapping[int, Owner], Mapping[int, Owner]] | None = None  # (given, answered)
        self.unresolved = 0  # in the last label()/pod_of() calls since refresh()

    @property
    def name_stats(self) -> NameStats:
        return self._names.stats

    def refresh(self) -> None:
        """Relist the node's name files when they changed; once per poll, before `label`."""
        self._names.refresh()
        self.unresolved = 0

    def label(self, owners: Mapping[int, Owner]) -> Mapping[int, Owner]:
        """`owners` with each container process's `workload` set (the same mapping when none runs in a
        container). Reads /proc/<pid>/cgroup only for processes not seen before."""
        if self._last is not None and owners is self._last[0]:
            return self._last[1]  # the owner cache's very same answer, every name found last time
        distinct = dict(zip(map(id, owners.values()), owners.values(), strict=True))  # in C: few owners
        renamed: dict[int, Owner] = {}
        live: set[tuple[int, float]] = set()
        for key, owner in distinct.items():
            live.add((owner.pid, owner.start_time))
            named = self._named(owner)
            if named is not owner:
                renamed[key] = named
        self._forget_all_but(live)
        answer = owners
        if renamed:
            get = renamed.get
            answer = {inode: get(id(owner), owner) for inode, owner in owners.items()}
        self._last = (owners, answer) if not self.unresolved else None
        return answer

    def pod_named(self, uid: str) -> Workload:
        """The names of the pod with UID `uid` (container ""), NO_WORKLOAD for '' or an unnamed pod: what
        the sockets without an owning process of the pod's network namespace count under."""
        if not uid:
            return NO_WORKLOAD
        names = self._names.resolve(ContainerIdentity("", "", uid))
        self.unresolved += names is None
        return Workload(names.namespace, names.pod) if names else NO_WORKLOAD

    def _named(self, owner: Owner) -> Owner:
        key = (owner.pid, owner.start_time)
        if key not in self._containers:
            self._containers[key] = read_container(owner.pid, self._proc_root)
        identity = self._containers[key]
        if identity is None:
            return owner
        names = self._names.resolve(identity)
        self.unresolved += names is None
        workload = workload_of(names)
        container = owner.container or identity.container_id[:12]
        if workload == owner.workload and container == owner.container:
            return owner
        return replace(owner, workload=workload, container=container)

    def _forget_all_but(self, live: set[tuple[int, float]]) -> None:
        if len(self._containers) > max(2 * len(live), 1024) or len(self._containers) > MAX_PROCESSES:
            self._containers = {k: v for k, v in self._containers.items() if k in live}
