"""scripts/install.sh: a venv install that works where `pip install` into the system Python is refused
(PEP 668 on Debian 12 / Ubuntu 24.04). Installed into a scratch directory here, not into /opt and /etc."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_install_script_makes_a_working_venv_install(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("install.sh runs as root")
    dirs = {k: tmp_path / k.lower() for k in ("PREFIX", "BINDIR", "ETCDIR", "UNITDIR")}
    env = {**os.environ, **{k: str(v) for k, v in dirs.items()}}
    done = subprocess.run(
        ["bash", str(REPO / "scripts/install.sh")], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr
    program = dirs["BINDIR"] / "tcpwatchd"
    assert program.resolve() == dirs["PREFIX"] / "bin" / "tcpwatchd"
    assert (dirs["UNITDIR"] / "tcpwatchd.service").read_text() == (
        REPO / "deploy/systemd/tcpwatchd.service"
    ).read_text()
    config = dirs["ETCDIR"] / "tcpwatchd.toml"
    check = subprocess.run(
        [str(program), "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    # A second run (an upgrade) keeps the operator's config.
    config.write_text("[daemon]\npoll_interval_seconds = 5\n")
    again = subprocess.run(
        ["bash", str(REPO / "scripts/install.sh")], capture_output=True, text=True, timeout=600, env=env
    )
    assert again.returncode == 0, again.stderr
    assert "keeping the existing" in again.stdout
    assert config.read_text() == "[daemon]\npoll_interval_seconds = 5\n"
