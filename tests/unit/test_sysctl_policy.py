"""Validation of [sysctl.desired] names and values: pure, refuses every path trick, reports every problem."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from tcpwatchd.config import DEFAULT_DESIRED_SYSCTLS
from tcpwatchd.sysctl.catalog import CATALOG, NAMES
from tcpwatchd.sysctl.policy import check_desired, find_problems, printable, validate_desired


@pytest.mark.parametrize("name", NAMES)
def test_every_catalogued_name_is_accepted(name: str) -> None:
    assert validate_desired({name: CATALOG[name].minimum}) == []


@pytest.mark.parametrize(
    "name",
    [
        "",
        "net",
        "net.ipv4",
        "net.ipv4.",
        ".net.ipv4.tcp_fin_timeout",
        "net..ipv4.tcp_fin_timeout",
        "net.ipv4..tcp_fin_timeout",
        "net/ipv4/tcp_fin_timeout",
        "net.ipv4.tcp_fin_timeout/../../../kernel/panic",
        "net.ipv4.../tcp_fin_timeout",
        "../net.ipv4.tcp_fin_timeout",
        "/proc/sys/net/ipv4/tcp_fin_timeout",
        "kernel.panic",
        "vm.overcommit_memory",
        "NET.ipv4.tcp_fin_timeout",
        "net.ipv4.TCP_FIN_TIMEOUT",
        "net.ipv4.tcp_fin_timeout\n",
        "net.ipv4.tcp_fin_timeout\x00",
        " net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_fin_timeout ",
        "net.ipv4.tcp_fin_t\u0456meout",  # a Cyrillic i
        "net.ipv4.tcp_fin_timeout.x",
        "net.ipv4.ip_forward",  # well-formed, but not a sysctl tcpwatchd audits
        "net.ipv4.conf.all.forwarding",
    ],
)
def test_bad_names_are_refused_and_named(name: str) -> None:
    errors = validate_desired({name: 60})
    assert len(errors) == 1
    assert errors[0].startswith(printable(name) + ": ")


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("net.ipv4.tcp_keepalive_time", 1, True),
        ("net.ipv4.tcp_keepalive_time", 32767, True),
        ("net.ipv4.tcp_keepalive_time", 0, False),  # the kernel takes 0 and negatives; the policy does not
        ("net.ipv4.tcp_keepalive_time", -5, False),
        ("net.ipv4.tcp_keepalive_time", 32768, False),  # MAX_TCP_KEEPIDLE
        ("net.ipv4.tcp_keepalive_intvl", 32768, False),
        ("net.ipv4.tcp_keepalive_probes", 127, True),
        ("net.ipv4.tcp_keepalive_probes", 128, False),  # MAX_TCP_KEEPCNT
        ("net.ipv4.tcp_retries2", 0, True),
        ("net.ipv4.tcp_retries2", 255, True),
        ("net.ipv4.tcp_retries2", 256, False),  # a u8 sysctl
        ("net.ipv4.tcp_orphan_retries", -1, False),
        ("net.ipv4.tcp_fin_timeout", 0, False),
        ("net.core.somaxconn", 2**31 - 1, True),
        ("net.core.somaxconn", 2**31, False),
        ("net.ipv4.tcp_rto_max_ms", 999, False),
        ("net.ipv4.tcp_rto_max_ms", 120001, False),
        ("net.ipv4.tcp_rto_max_ms", 1000, True),
        ("net.ipv4.tcp_keepalive_time", True, False),
        ("net.ipv4.tcp_keepalive_time", "600", False),
        ("net.ipv4.tcp_keepalive_time", 600.0, False),
        ("net.ipv4.tcp_keepalive_time", None, False),
    ],
)
def test_values_are_checked_against_the_catalog_range(name: str, value: object, ok: bool) -> None:
    errors = validate_desired({name: value})  # type: ignore[dict-item]
    assert (errors == []) is ok
    if not ok:
        assert errors[0].startswith(f"{name}: ")


def test_every_problem_is_reported_at_once() -> None:
    desired = {
        "net.ipv4.tcp_keepalive_time": 0,
        "net.ipv4.tcp_keepalive_intvl": 30,
        "net/../kernel": 1,
        "net.ipv4.tcp_keepalive_probes": 500,
    }
    errors = validate_desired(desired)
    assert [e.split(":")[0] for e in errors] == [
        "net.ipv4.tcp_keepalive_time",
        "net/../kernel",
        "net.ipv4.tcp_keepalive_probes",
    ]
    assert "outside the allowed range 1..127 count" in errors[2]


def test_the_default_desired_table_is_valid() -> None:
    assert validate_desired(dict(DEFAULT_DESIRED_SYSCTLS)) == []


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_fin_timeout"),
        ("net.ipv4.x\n", repr("net.ipv4.x\n")),
        ("a b", repr("a b")),
        ("\x1b[31mred", repr("\x1b[31mred")),
        ("", repr("")),
        ("x" * 500, repr("x" * 128)),
    ],
)
def test_printable_never_passes_control_characters(name: str, shown: str) -> None:
    assert printable(name) == shown


class _SysctlSection(BaseModel):
    """The validator the lead pastes into tcpwatchd.config.SysctlConfig, exercised here."""

    desired: dict[str, int] = {}

    @field_validator("desired")
    @classmethod
    def _known_sysctls(cls, value: dict[str, int]) -> dict[str, int]:
        return check_desired(value)


class _Root(BaseModel):
    sysctl: _SysctlSection = _SysctlSection()


def test_check_desired_locates_each_error_at_its_key() -> None:
    desired = {"net.ipv4.tcp_keepalive_time": 0, "net.ipv4.tcp_fin_timeout": 30, "x/y": 1, "x\ny": 2}
    with pytest.raises(ValidationError) as info:
        _Root.model_validate({"sysctl": {"desired": desired}})
    locs = [(e["loc"][2], e["input"]) for e in info.value.errors()]
    assert locs == [("net.ipv4.tcp_keepalive_time", 0), ("x/y", 1), ("'x\\ny'", 2)]
    assert "outside the allowed range" in info.value.errors()[0]["msg"]


def test_check_desired_passes_a_good_table_through() -> None:
    good = {"net.ipv4.tcp_keepalive_time": 600}
    assert _Root.model_validate({"sysctl": {"desired": good}}).sysctl.desired == good
    assert find_problems(good) == []
