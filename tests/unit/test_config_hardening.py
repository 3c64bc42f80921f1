"""Config loading that cannot hurt: special files, size, nesting and loose types end in one clear error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tcpwatchd.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def _special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    elif kind == "huge":
        path.write_text("# padding\n" * 200_000)  # 2 MB of valid TOML
    elif kind == "deep_array":
        path.write_text("[daemon]\nx = " + "[" * 50_000 + "]" * 50_000 + "\n")
    elif kind == "deep_inline":
        path.write_text("x = " + "{a = " * 5_000 + "1" + "}" * 5_000 + "\n")
    elif kind == "moderately_deep":  # below the recursion limit, above ours: pydantic never sees it
        path.write_text("[sysctl.desired]\nx = " + "[" * 200 + "]" * 200 + "\n")
    return path


CASES = {
    "fifo": "not a regular file (FIFO)",
    "devzero": "not a regular file (character device)",
    "directory": "not a regular file (directory)",
    "huge": "larger than 1048576 bytes",
    "deep_array": "nested deeper than 16 levels",
    "deep_inline": "nested deeper than 16 levels",
    "moderately_deep": "nested deeper than 16 levels",
}


@pytest.mark.parametrize(("kind", "reason"), sorted(CASES.items()))
def test_load_refuses_with_one_reason(tmp_path: Path, kind: str, reason: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(_special(tmp_path, kind))
    assert len(e.value.problems) == 1
    assert reason in e.value.problems[0]


@pytest.mark.parametrize(("kind", "reason"), sorted(CASES.items()))
def test_check_config_exits_1_without_traceback_or_hang(tmp_path: Path, kind: str, reason: str) -> None:
    path = _special(tmp_path, kind)
    done = subprocess.run(
        [sys.executable, "-m", "tcpwatchd", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert done.returncode == 1
    assert reason in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 2  # "invalid config PATH:" and the one reason


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("[exporter]\nport = true\n", "exporter.port"),
        ("[daemon]\npoll_interval_seconds = true\n", "daemon.poll_interval_seconds"),
        ("[detect.close_wait]\nenabled = 1\n", "detect.close_wait.enabled"),
        ('[detect.close_wait]\nenabled = "yes"\n', "detect.close_wait.enabled"),
        (
            "[detect.reconnect_storm]\nmin_new_connections = 10.0\n",
            "detect.reconnect_storm.min_new_connections",
        ),
        ("[exporter]\nlisten_address = 127\n", "exporter.listen_address"),
        ("[exporter]\nmax_process_label_values = 0\n", "exporter.max_process_label_values"),
        ("[exporter]\nweb_config_file = 1\n", "exporter.web_config_file"),
    ],
)
def test_loose_types_are_refused(toml: str, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(toml)
    assert [p.split(":")[0] for p in e.value.problems] == [field]


def test_toml_ints_still_fill_float_fields() -> None:
    cfg = parse_config("[daemon]\npoll_interval_seconds = 5\n[detect.phantom]\nidle_seconds = 600\n")
    assert cfg.daemon.poll_interval_seconds == 5.0
    assert isinstance(cfg.detect.phantom.idle_seconds, float)


def test_web_config_file_and_label_cap_are_accepted() -> None:
    cfg = parse_config(
        '[exporter]\nweb_config_file = "/etc/tcpwatchd/web.yml"\nmax_process_label_values = 50\n'
    )
    assert cfg.exporter.web_config_file == "/etc/tcpwatchd/web.yml"
    assert cfg.exporter.max_process_label_values == 50


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "-1", "3601", "soon"])
def test_snapshot_interval_must_be_finite_and_positive(value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tcpwatchd", "snapshot", "--interval", value],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert done.returncode == 2  # argparse's usage error
    assert "--interval" in done.stderr
    assert "Traceback" not in done.stderr
