"""Container identity from the text of /proc/<pid>/cgroup, and Kubernetes names from node file names. Pure.

The runtime puts each container in a cgroup named after its id (64 hex digits), under the pod's cgroup when
Kubernetes runs it. Shapes, by cgroup driver (cgroup v2 prints one `0::<path>` line; v1 one line per
hierarchy, `<n>:<controllers>:<path>`, all naming the same container):

    systemd:  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid, '-' as '_'>.slice/
                  cri-containerd-<id>.scope | crio-<id>.scope | docker-<id>.scope
              /system.slice/docker-<id>.scope            Docker
              /machine.slice/libpod-<id>.scope[/container]  Podman (rootless: under user@<uid>.service)
    cgroupfs: /kubepods/besteffort/pod<uid>/<id>         runtime not named in the path
              /kubepods/burstable/pod<uid>/crio-<id>
              /docker/<id>                               Docker;  /libpod_parent/libpod-<id>: Podman

`crio-conmon-<id>` and `libpod-conmon-<id>` hold the runtimes' monitor processes, not the container: they
are not container cgroups. A path read through a cgroup namespace may start with `/..`; only segments
matter. The deepest container segment wins (a container nested in another).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Names in node file names are Kubernetes object names: a DNS subdomain (pods) or DNS label (namespaces,
# containers), lowercase alphanumerics, '-' (and '.' in a subdomain): k8s.io/apimachinery validation.
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?")
# A pod UID: a UUID, or 32 hex digits for static pods (the hash of their manifest).
_POD_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
_POD_SEGMENT = re.compile(r"(?:kubepods(?:-[a-z]+)*-)?pod([0-9a-f_-]{32,36})(?:\.slice)?")
_PREFIXED = re.compile(r"(cri-containerd|crio|docker|libpod)-([0-9a-f]{64})(?:\.scope)?")
# containerd's systemd driver nested under another service (kind, k3s): "<pod slice>:<runtime>:<id>".
_COLON_FORM = re.compile(
    r"(?:kubepods(?:-[a-z]+)*-)?pod([0-9a-f_]{32,36})\.slice:(cri-containerd|crio|docker):([0-9a-f]{64})"
)
_RUNTIMES = {"cri-containerd": "containerd", "crio": "cri-o", "docker": "docker", "libpod": "podman"}
_LOG_SUFFIX = re.compile(r"-([0-9a-f]{64})\.log")


@dataclass(frozen=True, slots=True)
class ContainerIdentity:
    """Which container a process runs in. `runtime` is '' when the path does not name it (cgroupfs under
    Kubernetes); `pod_uid` is '' outside Kubernetes."""

    runtime: str  # "containerd", "cri-o", "docker", "podman" or ""
    container_id: str  # 64 hex digits
    pod_uid: str = ""  # with dashes, as the API server writes it


@dataclass(frozen=True, slots=True)
class PodIdentity:
    """Kubernetes names: (namespace, pod, container). A plain Docker container has only `container`."""

    namespace: str
    pod: str
    container: str = ""


def cgroup_paths(text: str) -> list[str]:
    """The cgroup paths of /proc/<pid>/cgroup, the v2 one first.

    >>> cgroup_paths("12:pids:/docker/x\\n0::/system.slice/y.scope\\n")
    ['/system.slice/y.scope', '/docker/x']
    """
    paths: list[str] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        if parts[0] == "0" and parts[1] == "":
            paths.insert(0, parts[2])
        elif parts[2] not in paths:
            paths.append(parts[2])
    return paths


def container_of_path(path: str) -> ContainerIdentity | None:
    """The container a cgroup path names, if any.

    >>> container_of_path("/system.slice/docker-" + "ab" * 32 + ".scope").runtime
    'docker'
    """
    segments = path.split("/")
    pod_uid, found = "", None
    for i, segment in enumerate(segments):
        pod = _POD_SEGMENT.fullmatch(segment)
        if pod is not None:
            uid = pod.group(1).replace("_", "-")
            pod_uid = uid if _POD_UID.fullmatch(uid) else pod_uid
            continue
        prefixed, colon = _PREFIXED.fullmatch(segment), _COLON_FORM.fullmatch(segment)
        if colon is not None:
            uid = colon.group(1).replace("_", "-")
            found = ContainerIdentity(
                _RUNTIMES[colon.group(2)], colon.group(3), uid if _POD_UID.fullmatch(uid) else ""
            )
        elif prefixed is not None:
            found = ContainerIdentity(_RUNTIMES[prefixed.group(1)], prefixed.group(2), pod_uid)
        elif _CONTAINER_ID.fullmatch(segment):
            runtime = "docker" if i > 0 and segments[i - 1] == "docker" else ""
            found = ContainerIdentity(runtime, segment, pod_uid)
    return found


def parse_container(text: str) -> ContainerIdentity | None:
    """The container of a process from its /proc/<pid>/cgroup text; None for a host process.

    >>> parse_container("0::/kubepods/besteffort/pod0a1b2c3d-0000-4000-8000-00000000000a/" + "c" * 64).pod_uid
    '0a1b2c3d-0000-4000-8000-00000000000a'
    """
    for path in cgroup_paths(text):
        found = container_of_path(path)
        if found is not None:
            return found
    return None


def parse_container_log_name(name: str) -> tuple[str, PodIdentity] | None:
    """`/var/log/containers/<pod>_<namespace>_<container>-<id>.log` → (id, names); None when malformed
    (the kubelet never writes another shape, so anything else is not to be trusted).

    >>> parse_container_log_name("web-7d4b9_shop_nginx-" + "ef" * 32 + ".log")[1]
    PodIdentity(namespace='shop', pod='web-7d4b9', container='nginx')
    """
    suffix = _LOG_SUFFIX.search(name)
    if suffix is None or suffix.end() != len(name):
        return None
    parts = name[: suffix.start()].split("_")
    if len(parts) != 3 or not _valid(parts[0], parts[1], parts[2]):
        return None
    return suffix.group(1), PodIdentity(namespace=parts[1], pod=parts[0], container=parts[2])


def parse_pod_dir_name(name: str) -> tuple[str, PodIdentity] | None:
    """`/var/log/pods/<namespace>_<pod>_<uid>` → (uid, names); None when malformed.

    >>> parse_pod_dir_name("shop_web-7d4b9_0a1b2c3d-0000-4000-8000-00000000000a")[1]
    PodIdentity(namespace='shop', pod='web-7d4b9', container='')
    """
    parts = name.split("_")
    if len(parts) != 3 or not _POD_UID.fullmatch(parts[2]) or not _valid(parts[1], parts[0], ""):
        return None
    return parts[2], PodIdentity(namespace=parts[0], pod=parts[1])


def _valid(pod: str, namespace: str, container: str) -> bool:
    return bool(
        _DNS_SUBDOMAIN.fullmatch(pod)
        and _DNS_LABEL.fullmatch(namespace)
        and (container == "" or _DNS_LABEL.fullmatch(container))
    )
