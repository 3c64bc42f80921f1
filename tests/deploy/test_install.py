"""scripts/install.sh: a venv install that works where `pip install` into the system Python is refused
(PEP 668 on Debian 12 / Ubuntu 24.04). Installed into a scratch directory here, not into /opt and /etc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import why_no_netns
from tests.support.netns import NetNS, stop, wait_until

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
    _runs_and_serves(program, config)
    # A second run (an upgrade) keeps the operator's config.
    config.write_text("[daemon]\npoll_interval_seconds = 5\n")
    again = subprocess.run(
        ["bash", str(REPO / "scripts/install.sh")], capture_output=True, text=True, timeout=600, env=env
    )
    assert again.returncode == 0, again.stderr
    assert "keeping the existing" in again.stdout
    assert config.read_text() == "[daemon]\npoll_interval_seconds = 5\n"


def _runs_and_serves(program: Path, config: Path) -> None:
    """The installed program runs on the installed config (in a private network namespace, so its port
    is its own), serves /metrics, and stops cleanly on SIGTERM."""
    if why_no_netns():
        return
    with NetNS() as ns:
        daemon = ns.spawn(str(program), "run", "-c", str(config))
        try:
            fetch = "import urllib.request as u;print(u.urlopen('http://127.0.0.1:9814/metrics',timeout=5).read().decode())"

            def serves() -> bool:
                done = ns.run(sys.executable, "-c", fetch, check=False, timeout=20)
                return "tcpwatchd_last_poll_timestamp_seconds" in done.stdout

            wait_until(serves, timeout=30, what="the installed daemon to serve a poll")
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=15) == 0
        finally:
            stop(daemon)
