"""Names from a fake node tree in tmp_path: /var/log/containers symlinks, /var/log/pods directories, Docker
state; hostile and malformed entries are skipped and counted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tcpwatchd.sources.containers import ContainerIdentity, PodIdentity
from tcpwatchd.sources.podnames import PodNames, docker_identity, pod_uid_of, read_container

C1, C2, C3 = "a1" * 32, "b2" * 32, "c3" * 32
POD = "3f9a1c22-7b04-4d51-b2ef-0a9c1d4e88f1"


class Node:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.containers = root / "var/log/containers"
        self.pods = root / "var/log/pods"
        self.containers.mkdir(parents=True)
        self.pods.mkdir(parents=True)

    def pod(self, namespace: str, pod: str, uid: str, container: str, cid: str) -> None:
        log_dir = self.pods / f"{namespace}_{pod}_{uid}" / container
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "0.log").touch()
        (self.containers / f"{pod}_{namespace}_{container}-{cid}.log").symlink_to(log_dir / "0.log")

    def docker(self, cid: str, config: object) -> Path:
        d = self.root / "var/lib/docker/containers" / cid
        d.mkdir(parents=True, exist_ok=True)
        path = d / "config.v2.json"
        path.write_text(json.dumps(config) if not isinstance(config, str) else config)
        return path


@pytest.fixture
def node(tmp_path: Path) -> Node:
    n = Node(tmp_path / "host")
    n.pod("shop", "web-5c9d", POD, "nginx", C1)
    return n


def test_a_container_by_id_and_a_pause_container_by_its_pod(node: Node) -> None:
    names = PodNames(str(node.root))
    names.refresh()
    assert names.resolve(ContainerIdentity("containerd", C1, POD)) == PodIdentity("shop", "web-5c9d", "nginx")
    # The sandbox (pause) container has no log: its pod is known, its container name is not.
    assert names.resolve(ContainerIdentity("containerd", C2, POD)) == PodIdentity("shop", "web-5c9d", "")
    assert names.resolve(ContainerIdentity("containerd", C3, "0" * 32)) is None
    assert names.stats.names == 2 and names.stats.skipped == 0


def test_dangling_symlinks_still_name_the_container(node: Node) -> None:
    for path in node.pods.rglob("0.log"):
        path.unlink()
    names = PodNames(str(node.root))
    names.refresh()
    assert names.resolve(ContainerIdentity("containerd", C1, POD)) == PodIdentity("shop", "web-5c9d", "nginx")


def test_hostile_names_are_skipped_and_counted(node: Node) -> None:
    for bad in (f'we"b_shop_nginx-{C2}.log', f"web_sh\nop_nginx-{C2}.log", f"a_b_c_d-{C2}.log", "README"):
        (node.containers / bad).touch()
    os.mkdir(os.path.join(os.fsencode(node.pods), b"shop_w\xffb_" + POD.encode()))
    names = PodNames(str(node.root))
    names.refresh()
    assert names.stats.skipped == 5
    assert names.resolve(ContainerIdentity("containerd", C2, "")) is None


def test_listings_are_redone_only_when_the_directory_changes(node: Node) -> None:
    names = PodNames(str(node.root))
    names.refresh()
    old = node.containers.stat().st_mtime_ns - 10**10
    os.utime(node.containers, ns=(old, old))  # old enough to be trusted
    names.refresh()
    (node.containers / f"late_shop_nginx-{C2}.log").touch()
    os.utime(node.containers, ns=(old, old))  # a change the mtime does not show: not seen
    names.refresh()
    assert names.resolve(ContainerIdentity("", C2, "")) is None
    os.utime(node.containers)  # the mtime moves: relisted
    names.refresh()
    assert names.resolve(ContainerIdentity("", C2, "")) == PodIdentity("shop", "late", "nginx")


def test_huge_directories_are_cut(node: Node) -> None:
    for i in range(30):
        node.pod("shop", f"p{i}", f"{i:032x}", "c", f"{i:064x}")
    names = PodNames(str(node.root), max_entries=10)
    names.refresh()
    assert names.stats.truncated == 2 and names.stats.names == 20


def test_an_unreadable_or_absent_host_root(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.touch()
    names = PodNames(str(not_a_dir))
    names.refresh()
    assert names.resolve(ContainerIdentity("docker", C1)) is None
    assert names.stats.unreadable == 2  # ENOTDIR for both listings: counted
    absent = PodNames(str(tmp_path / "absent"))
    absent.refresh()
    assert absent.stats.unreadable == 0  # no kubelet, no Docker: nothing to say


def test_docker_names(node: Node) -> None:
    node.docker(C2, {"Name": "/billing-api", "Config": {"Labels": {}}})
    node.docker(C3, "{not json")
    names = PodNames(str(node.root))
    names.refresh()
    assert names.resolve(ContainerIdentity("docker", C2)) == PodIdentity("", "", "billing-api")
    assert names.resolve(ContainerIdentity("docker", C3)) is None
    assert names.stats.unreadable == 1
    assert names.resolve(ContainerIdentity("docker", "../../etc")) is None


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"Name": "/web-1"}, PodIdentity("", "", "web-1")),
        ({"Name": "/we\nb"}, None),
        ({"Name": 7}, None),
        ([], None),
        ({"Config": "x", "Name": "/a"}, PodIdentity("", "", "a")),
        (
            {
                "Name": "/k8s_nginx_web_shop_x_0",
                "Config": {
                    "Labels": {
                        "io.kubernetes.pod.name": "web",
                        "io.kubernetes.pod.namespace": "shop",
                        "io.kubernetes.container.name": "nginx",
                    }
                },
            },
            PodIdentity("shop", "web", "nginx"),
        ),
        ({"Config": {"Labels": {"io.kubernetes.pod.name": "w'b"}}}, None),
    ],
)
def test_docker_identity(config: object, expected: PodIdentity | None) -> None:
    assert docker_identity(config) == expected


def test_read_container_and_the_pod_of_a_namespace(tmp_path: Path) -> None:
    for pid, text in ((1, "0::/init.scope\n"), (7, f"0::/kubepods/pod{POD}/{C1}\n")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(text)
    assert read_container(7, str(tmp_path)) == ContainerIdentity("", C1, POD)
    assert read_container(99, str(tmp_path)) is None
    assert pod_uid_of([99, 1, 7], str(tmp_path)) == POD and pod_uid_of([1], str(tmp_path)) == ""
