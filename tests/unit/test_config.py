from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from tcpwatchd.cli import main
from tcpwatchd.config import ConfigError, default_config, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def test_embedded_default_is_safe() -> None:
    cfg = default_config()
    assert cfg.exporter.listen_address == "127.0.0.1"
    assert cfg.exporter.port == 9814
    assert cfg.sysctl.mode == "audit"
    assert cfg.daemon.poll_interval_seconds == 10


def test_example_config_is_valid_and_documents_every_key() -> None:
    text = (REPO / "config.example.toml").read_text()
    cfg = parse_config(text, "config.example.toml")
    assert cfg == default_config(), "the example must show the defaults"
    _assert_documented(cfg, "", text)


def _assert_documented(model: BaseModel, path: str, text: str) -> None:
    for key, value in model:
        dotted = f"{path}.{key}" if path else key
        item = _model_items(type(model).model_fields[key].annotation)
        if item is not None:  # an array of tables, empty by default: its example is commented out
            _assert_table_array_documented(item, dotted, text)
        elif isinstance(value, BaseModel):
            if any(not isinstance(v, BaseModel) for _, v in value):
                assert f"[{dotted}]" in text, f"section [{dotted}] is not documented"
            _assert_documented(value, dotted, text)
        elif isinstance(value, dict):
            assert f"[{dotted}]" in text, f"[{dotted}] is not documented"
        else:
            assert f"\n{key} =" in text, f"{dotted} is not documented"


def _model_items(annotation: object) -> type[BaseModel] | None:
    """The item model of a `list[SomeModel]` field, else None."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is list and args and isinstance(args[0], type):
        return args[0] if issubclass(args[0], BaseModel) else None
    return None


def _assert_table_array_documented(item: type[BaseModel], dotted: str, text: str) -> None:
    """`[[dotted]]` is shown, and every key of its tables (and of their sub-tables) is named."""
    assert f"[[{dotted}]]" in text, f"[[{dotted}]] is not documented"
    for key, info in item.model_fields.items():
        assert re.search(rf"\b{key}\b", text), f"{dotted}.{key} is not documented"
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            for subkey in sub.model_fields:
                assert re.search(rf"\b{subkey}\b", text), f"{dotted}.{key}.{subkey} is not documented"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            "[daemon]\npoll_interval_seconds = -1\n",
            "daemon.poll_interval_seconds: Input should be greater than or equal to 0.1",
        ),
        ("[daemon]\npoll_intervall_seconds = 5\n", "daemon.poll_intervall_seconds: unknown key"),
        ("[exporter]\nport = 70000\n", "exporter.port: Input should be less than or equal to 65535"),
        ('[exporter]\nport = "http"\n', "exporter.port: Input should be a valid integer"),
        (
            '[exporter]\nlisten_address = "localhost"\n',
            "exporter.listen_address: Value error, not an IP address",
        ),
        (
            "[detect.phantom]\nidle_seconds = 0\n",
            "detect.phantom.idle_seconds: Input should be greater than 0",
        ),
        ("[detect.reconnect_storm]\nmin_new_connections = 1\n", "detect.reconnect_storm.min_new_connections"),
        ("[detect.nonsense]\nenabled = true\n", "detect.nonsense: unknown key"),
        ('[sysctl]\nmode = "yes"\n', "sysctl.mode: Input should be 'off', 'audit' or 'enforce'"),
        ("[daemon\n", "TOML syntax"),
        ('[sysctl.desired]\n"net.ipv4.../x" = 1\n', "sysctl.desired"),
        (
            '[sysctl.desired]\n"net.ipv4.tcp_keepalive_time" = 0\n',
            "sysctl.desired.net.ipv4.tcp_keepalive_time",
        ),
        (
            '[sysctl.desired]\n"net.ipv4.tcp_keepalive_time" = true\n',
            "sysctl.desired.net.ipv4.tcp_keepalive_time",
        ),
    ],
)
def test_invalid_configs_are_refused_with_the_field(toml: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(toml)
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_every_error_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("[daemon]\npoll_interval_seconds = 0\n[exporter]\nport = 0\nbogus = 1\n")
    fields = sorted(p.split(":")[0] for p in info.value.problems)
    assert fields == ["daemon.poll_interval_seconds", "exporter.bogus", "exporter.port"]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[daemon]\npoll_interval_seconds = 5\n")
    bad = tmp_path / "bad.toml"
    bad.write_text('[exporter]\nport = -3\nlisten_address = "nope"\n')
    assert main(["check-config", str(good)]) == 0
    assert main(["check-config", str(bad)]) != 0
    err = capsys.readouterr().err
    assert "exporter.port" in err and "exporter.listen_address" in err
    assert "Traceback" not in err
