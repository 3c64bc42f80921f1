from __future__ import annotations

import pytest

from tcpwatchd.sources.procfs import CgroupInfo, parse_cgroup, parse_stat, socket_inode

STAT_TAIL = b" S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 0 0 18446744073709551615"


@pytest.mark.parametrize(
    ("comm", "expected"),
    [
        (b"nginx", "nginx"),
        (b"my (odd) name", "my (odd) name"),
        (b"a) S 1 2 3", "a) S 1 2 3"),
        (b'q"uote\\back', 'q"uote\\\\back'),  # a backslash is doubled: escapes below stay unambiguous
        (b"new\nline", "new\\x0aline"),  # controls escaped once, here, for every output
        (b"bad\xff\xfeutf8", "bad\\xff\\xfeutf8"),
        (b"\\xff", "\\\\xff"),  # the text \xff is not the byte 0xff
        (b"~other", "\\x7eother"),  # values starting with ~ are tcpwatchd's own
    ],
)
def test_parse_stat_hostile_comm(comm: bytes, expected: str) -> None:
    stat = parse_stat(b"42 (" + comm + b")" + STAT_TAIL)
    assert stat.comm == expected
    assert stat.start_ticks == 98765


@pytest.mark.parametrize(
    ("link", "inode"),
    [("socket:[12345]", 12345), ("socket:[]", 0), ("pipe:[12]", 0), ("/dev/null", 0), ("socket:[1]x", 0)],
)
def test_socket_inode(link: str, inode: int) -> None:
    assert socket_inode(link) == inode


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0::/system.slice/nginx.service\n", CgroupInfo("nginx.service", "")),
        ("0::/user.slice/user-1000.slice/session-3.scope\n", CgroupInfo("session-3.scope", "")),
        ("0::/\n", CgroupInfo("", "")),
        (
            "0::/system.slice/docker-" + "ab" * 32 + ".scope\n",
            CgroupInfo("docker-" + "ab" * 32 + ".scope", "ab" * 6),
        ),
        (
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-"
            + "cd" * 32
            + ".scope\n",
            CgroupInfo("cri-containerd-" + "cd" * 32 + ".scope", "cd" * 6),
        ),
        (
            "12:cpu,cpuacct:/docker/" + "ef" * 32 + "\n1:name=systemd:/docker/" + "ef" * 32 + "\n",
            CgroupInfo("", "ef" * 6),
        ),
        ("11:memory:/\n1:name=systemd:/system.slice/sshd.service\n", CgroupInfo("sshd.service", "")),
        ("garbage\n", CgroupInfo("", "")),
    ],
)
def test_parse_cgroup(text: str, expected: CgroupInfo) -> None:
    assert parse_cgroup(text) == expected
