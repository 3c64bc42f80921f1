"""Container identity from /proc/<pid>/cgroup and names from node file names.

tests/fixtures/cgroup holds one file per path shape the runtimes write (v1 files with one line per hierarchy,
as the kernel prints them); the shapes are the real ones, the ids and pod UIDs are made up."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpwatchd.sources.containers import (
    ContainerIdentity,
    PodIdentity,
    cgroup_paths,
    parse_container,
    parse_container_log_name,
    parse_pod_dir_name,
)
from tcpwatchd.sources.procfs import parse_cgroup

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cgroup"
C1 = "9c2b7f1e0a4d3c5b6e8f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d"
C2 = "55ea3863351726184e26ca7418f577d04c96dac0009e1f088f6c0c7a1dc2ed7c"
C3 = "4f8d4e1b7d1a2c3b9e0f6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b"
POD = "3f9a1c22-7b04-4d51-b2ef-0a9c1d4e88f1"
STATIC_POD = "8e1f0c4d9a2b3c4d5e6f708192a3b4c5"

EXPECTED: dict[str, ContainerIdentity | None] = {
    "v2_systemd_containerd_burstable": ContainerIdentity("containerd", C1, POD),
    "v2_systemd_crio_guaranteed": ContainerIdentity("cri-o", C1, POD),
    "v2_systemd_crio_conmon": None,  # the runtime's monitor, in the host's namespace: not the container
    "v2_cgroupfs_besteffort": ContainerIdentity("", C1, POD),
    "v2_cgroupfs_crio": ContainerIdentity("cri-o", C1, POD),
    "v2_cgroupfs_static_pod": ContainerIdentity("", C1, STATIC_POD),
    "v2_nested_colon_form": ContainerIdentity("containerd", C1, POD),
    "v2_through_cgroupns": ContainerIdentity("containerd", C1, POD),
    "v2_systemd_docker": ContainerIdentity("docker", C3),
    "v2_podman_rootful": ContainerIdentity("podman", C2),
    "v2_podman_rootless": ContainerIdentity("podman", C2),
    "v2_podman_conmon": None,
    "v2_host_service": None,
    "v2_inside_cgroupns": None,
    "v2_docker_in_docker": ContainerIdentity("docker", C1),  # the innermost container
    "v1_cgroupfs_docker": ContainerIdentity("docker", C3),
    "v1_systemd_containerd": ContainerIdentity("containerd", C1, POD),
    "v1_host_session": None,
}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in FIXTURES.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_container_identity(name: str) -> None:
    assert parse_container((FIXTURES / name).read_text()) == EXPECTED[name]


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("v2_systemd_docker", f"docker-{C3}.scope"),
        ("v2_host_service", "nginx.service"),
        ("v1_host_session", "session-3.scope"),
        ("v2_cgroupfs_besteffort", ""),
    ],
)
def test_the_unit_is_still_the_one_procfs_derives(name: str, unit: str) -> None:
    assert parse_cgroup((FIXTURES / name).read_text()).unit == unit


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage without colons\n",
        "0::relative/path\n",
        "0::/kubepods/podnot-a-uid/" + C1 + "\n",  # a bad pod uid is dropped, the container kept
        "0::/docker/" + C1[:63] + "\n",  # 63 digits: not an id
        "0::/system.slice/docker-" + C1.upper() + ".scope\n",
        "0::/kubepods/besteffort/pod" + POD + "/\n\x00\n",
    ],
)
def test_malformed_cgroup_text_never_raises(text: str) -> None:
    found = parse_container(text)
    assert found is None or (found.container_id == C1 and found.pod_uid == "")


def test_v2_path_comes_first() -> None:
    assert cgroup_paths("3:cpu:/a\n0::/b\n1:name=systemd:/a\n") == ["/b", "/a"]


LOG = f"web-7d4b9c-x2x_shop_nginx-{C1}.log"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (LOG, (C1, PodIdentity("shop", "web-7d4b9c-x2x", "nginx"))),
        (
            f"etcd-node.example.com_kube-system_etcd-{C1}.log",
            (C1, PodIdentity("kube-system", "etcd-node.example.com", "etcd")),
        ),
        (f"web_shop_nginx_extra-{C1}.log", None),  # one '_' too many
        (f'we"b_shop_nginx-{C1}.log', None),
        (f"web_sh\nop_nginx-{C1}.log", None),
        (f"web_shop_nginx-{C1}.log.1", None),
        (f"web_shop_nginx-{C1[:40]}.log", None),
        (f"Web_shop_nginx-{C1}.log", None),  # Kubernetes names are lowercase
        (f"_shop_nginx-{C1}.log", None),
        (f"web_{'n' * 64}_nginx-{C1}.log", None),  # a namespace is at most 63 characters
        ("web_shop_nginx-\udcff.log", None),  # undecodable bytes, as os.scandir gives them
    ],
)
def test_container_log_names(name: str, expected: tuple[str, PodIdentity] | None) -> None:
    assert parse_container_log_name(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (f"shop_web-7d4b9c-x2x_{POD}", (POD, PodIdentity("shop", "web-7d4b9c-x2x"))),
        (f"kube-system_etcd-node1_{STATIC_POD}", (STATIC_POD, PodIdentity("kube-system", "etcd-node1"))),
        (f"shop_web_{POD[:-1]}", None),
        (f"shop_web_x_{POD}", None),
        (f"shop_we'b_{POD}", None),
        ("shop_web", None),
    ],
)
def test_pod_directory_names(name: str, expected: tuple[str, PodIdentity] | None) -> None:
    assert parse_pod_dir_name(name) == expected
