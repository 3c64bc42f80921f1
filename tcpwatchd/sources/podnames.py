"""Kubernetes and Docker names of containers, read from the node's files: no API server, no credentials.

The kubelet keeps, on every node, one symlink per container
`/var/log/containers/<pod>_<namespace>_<container>-<id>.log` and one directory per pod
`/var/log/pods/<namespace>_<pod>_<uid>/` (what Fluent Bit and Promtail read); Docker keeps each container's
name in `/var/lib/docker/containers/<id>/config.v2.json`. All under a configurable host root (a DaemonSet
mounts them read-only). Listings are redone only when a directory's mtime changes (or changed too recently
to be trusted: a change within the same timestamp tick would be missed), bounded in entries; names that are
not the kubelet's shape (quotes, newlines, extra '_') are skipped and counted, never trusted.

    >>> names = PodNames("/")                                          # doctest: +SKIP
    >>> names.refresh(); names.resolve(parse_container(text))          # doctest: +SKIP
    PodIdentity(namespace='shop', pod='web-7d4b9', container='nginx')
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tcpwatchd.sources.containers import (
    ContainerIdentity,
    PodIdentity,
    parse_container,
    parse_container_log_name,
    parse_pod_dir_name,
)
from tcpwatchd.sources.procnet import read_capped

MAX_ENTRIES = 50_000  # per directory listing: a node runs at most a few hundred pods
MAX_DOCKER_NAMES = 4096
MAX_CONFIG_BYTES = 1 << 20  # config.v2.json is a few KiB
MAX_CGROUP_BYTES = 64 << 10
RACY_NS = 2_000_000_000  # a directory changed less than this before we listed it is listed again
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
_DOCKER_NAME = re.compile(r"/?([a-zA-Z0-9][a-zA-Z0-9_.-]{0,254})")
Parser = Callable[[str], "tuple[str, PodIdentity] | None"]


@dataclass(frozen=True, slots=True)
class NameStats:
    """Counts of the current listings, ready for metrics."""

    names: int = 0  # containers and pods known by name
    skipped: int = 0  # entries whose name is not the expected shape (hostile or foreign)
    unreadable: int = 0  # directories or files that exist but could not be read
    truncated: int = 0  # listings cut at MAX_ENTRIES


class _Listing:
    """One directory's entries, parsed, relisted only when it changed."""

    def __init__(self, path: str, parse: Parser, cap: int) -> None:
        self.path, self._parse, self._cap = path, parse, cap
        self.entries: dict[str, PodIdentity] = {}
        self.skipped = self.unreadable = self.truncated = 0
        self._signature: tuple[int, int] | None = None
        self._racy = False

    def refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as e:  # no kubelet here (ENOENT) is normal; anything else is worth counting
            self._reset(unreadable=int(e.errno != errno.ENOENT))
            return
        signature = (st.st_ino, st.st_mtime_ns)
        if signature == self._signature and not self._racy:
            return
        entries: dict[str, PodIdentity] = {}
        skipped = truncated = 0
        try:
            with os.scandir(self.path) as it:
                for n, entry in enumerate(it):
                    if n >= self._cap:
                        truncated = 1
                        break
                    parsed = self._parse(entry.name)
                    if parsed is None:
                        skipped += 1
                    else:
                        entries[parsed[0]] = parsed[1]
        except OSError:
            self._reset(unreadable=1)
            return
        self.entries, self.skipped, self.unreadable, self.truncated = entries, skipped, 0, truncated
        self._signature = signature
        self._racy = time.time_ns() - st.st_mtime_ns < RACY_NS

    def _reset(self, unreadable: int) -> None:
        self.entries, self.skipped, self.unreadable, self.truncated = {}, 0, unreadable, 0
        self._signature = None


class PodNames:
    """container id / pod UID → names. `refresh()` once per poll, then `resolve()` per container."""

    def __init__(self, host_root: str = "/", max_entries: int = MAX_ENTRIES) -> None:
        self._host_root = host_root
        self._containers = _Listing(self._path("var/log/containers"), parse_container_log_name, max_entries)
        self._pods = _Listing(self._path("var/log/pods"), parse_pod_dir_name, max_entries)
        self._docker: dict[str, tuple[int, PodIdentity | None]] = {}  # id → (config mtime, name)
        self._docker_skipped = self._docker_unreadable = 0

    def refresh(self) -> None:
        self._containers.refresh()
        self._pods.refresh()

    @property
    def stats(self) -> NameStats:
        listings = (self._containers, self._pods)
        return NameStats(
            names=sum(len(listing.entries) for listing in listings) + len(self._docker),
            skipped=sum(listing.skipped for listing in listings) + self._docker_skipped,
            unreadable=sum(listing.unreadable for listing in listings) + self._docker_unreadable,
            truncated=sum(listing.truncated for listing in listings),
        )

    def resolve(self, identity: ContainerIdentity) -> PodIdentity | None:
        """The names of a container: by id from /var/log/containers, else its pod's from /var/log/pods
        (container ''), else Docker's name for it. None when nothing names it."""
        named = self._containers.entries.get(identity.container_id)
        if named is not None:
            return named
        if identity.pod_uid:
            return self._pods.entries.get(identity.pod_uid)
        if identity.runtime in ("docker", ""):
            return self._docker_name(identity.container_id)
        return None

    def _docker_name(self, container_id: str) -> PodIdentity | None:
        if not _CONTAINER_ID.fullmatch(container_id):  # it becomes a path: nothing but the 64 hex digits
            return None
        path = self._path(f"var/lib/docker/containers/{container_id}/config.v2.json")
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return None  # not a Docker container, or not any more
        cached = self._docker.get(container_id)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            config = json.loads(read_capped(path, MAX_CONFIG_BYTES))
            name = docker_identity(config)
        except (OSError, ValueError):
            self._docker_unreadable += 1
            return None
        self._docker_skipped += name is None
        if len(self._docker) >= MAX_DOCKER_NAMES:
            del self._docker[next(iter(self._docker))]  # the oldest entry
        self._docker[container_id] = (mtime, name)
        return name

    def _path(self, relative: str) -> str:
        return os.path.join(self._host_root, relative)


def docker_identity(config: object) -> PodIdentity | None:
    """Names from a Docker config.v2.json: the Kubernetes labels dockershim set, else the container name.

    >>> docker_identity({"Name": "/web-1", "Config": {"Labels": {}}})
    PodIdentity(namespace='', pod='', container='web-1')
    """
    if not isinstance(config, dict):
        return None
    inner = config.get("Config")
    labels = inner.get("Labels") if isinstance(inner, dict) else None
    if isinstance(labels, dict) and "io.kubernetes.pod.name" in labels:
        name = "{}_{}_{}-{}.log".format(
            labels.get("io.kubernetes.pod.name"),
            labels.get("io.kubernetes.pod.namespace"),
            labels.get("io.kubernetes.container.name"),
            "0" * 64,
        )
        parsed = parse_container_log_name(name)  # the same validation as the kubelet's file names
        return parsed[1] if parsed else None
    docker_name = config.get("Name")
    match = _DOCKER_NAME.fullmatch(docker_name) if isinstance(docker_name, str) else None
    return PodIdentity(namespace="", pod="", container=match.group(1)) if match else None


def read_container(pid: int, proc_root: str = "/proc") -> ContainerIdentity | None:
    """The container of a process (None for a host process or one that exited)."""
    try:
        data = read_capped(os.path.join(proc_root, str(pid), "cgroup"), MAX_CGROUP_BYTES)
    except OSError:
        return None
    return parse_container(data.decode("utf-8", "replace"))


def pod_uid_of(pids: Iterable[int], proc_root: str = "/proc") -> str:
    """The pod a network namespace belongs to, from the processes in it ('' when none is a pod's): what
    sockets without an owner (TIME_WAIT, orphans) of that namespace are attributed to."""
    for pid in pids:
        identity = read_container(pid, proc_root)
        if identity is not None and identity.pod_uid:
            return identity.pod_uid
    return ""
