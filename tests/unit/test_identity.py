"""Process identity (sources/identity.py) on fixture trees: boot time from <proc_root>/stat, owners."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from tcpwatchd.sources.identity import ProcessIdentity, read_boot_time
from tcpwatchd.sources.procfs import parse_boot_time

POPULATION = Path(__file__).resolve().parents[1] / "fixtures" / "proc" / "population"


def test_boot_time_is_read_from_the_proc_root_given() -> None:
    recorded = (POPULATION / "stat").read_text()
    btime = next(int(line.split()[1]) for line in recorded.splitlines() if line.startswith("btime "))
    assert read_boot_time(str(POPULATION)) == btime == parse_boot_time(recorded)
    assert btime > 1_500_000_000


@pytest.mark.parametrize("text", ["", "cpu  1 2 3\nintr 4\n", "btimex 5\n"])
def test_a_stat_without_btime_is_an_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_boot_time(text)


def fake_process(root: Path, pid: int, comm: str, start: int, cgroup: str | None) -> None:
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "stat").write_bytes(
        f"{pid} ({comm}) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0".encode()
    )
    if cgroup is not None:
        (root / str(pid) / "cgroup").write_text(cgroup)


def test_an_owner_from_a_fixture_tree(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("cpu  1 2 3\nbtime 1000000\n")
    ticks = os.sysconf("SC_CLK_TCK")
    fake_process(tmp_path, 7, "nginx: worker", 30 * ticks, "0::/system.slice/nginx.service\n")
    identity = ProcessIdentity(str(tmp_path))
    key, stat = identity.stat(7)
    assert key == (7, 30 * ticks)
    owner = identity.owner(7, stat)
    assert (owner.pid, owner.name, owner.start_time, owner.unit) == (
        7,
        "nginx: worker",
        1_000_030.0,
        "nginx.service",
    )
    assert owner.user == identity.user(os.getuid())


def test_no_cgroup_file_gives_no_unit_and_a_vanished_process_raises(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("btime 5\n")
    fake_process(tmp_path, 8, "srv", 0, cgroup=None)
    identity = ProcessIdentity(str(tmp_path))
    owner = identity.owner(8, identity.stat(8)[1])
    assert (owner.unit, owner.container, owner.start_time) == ("", "", 5.0)
    with pytest.raises(FileNotFoundError):
        identity.stat(9)


def test_without_a_stat_file_start_times_count_from_boot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert ProcessIdentity(str(tmp_path)).boot_time == 0.0
    assert "no boot time" in caplog.text


def test_a_uid_without_a_name_is_its_number() -> None:
    identity = ProcessIdentity(str(POPULATION))
    assert identity.user(0) == "root"
    unnamed = next(uid for uid in range(54321, 64000) if not _has_name(uid))
    assert identity.user(unnamed) == str(unnamed)


def _has_name(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True
