"""Validation of the `[sysctl.desired]` table: pure, never touches /proc, so config loading can call it.

A name must match a strict pattern (lower-case dotted segments under `net.`: no `/`, no `..`, no empty
segment) *and* be in the static catalog; a value must be an int inside the catalog's range. Every problem
is reported, so `check-config` shows them all at once, and a caller that finds any writes nothing.

>>> validate_desired({"net.ipv4.tcp_keepalive_time": 0, "net.ipv4.tcp_keepalive_intvl": 30})
['net.ipv4.tcp_keepalive_time: 0 is outside the allowed range 1..32767 seconds']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from tcpwatchd.sysctl.catalog import CATALOG, NAMES, spec_of

# Segments of [a-z0-9_], at least three of them, the first one "net". Anchored with \Z, not $, which would
# also match before a trailing newline.
NAME_PATTERN = re.compile(r"net(?:\.[a-z0-9_]+){2,}\Z")
_BAD_NAME = (
    "not a sysctl name (expected dotted lower-case words under net., e.g. net.ipv4.tcp_keepalive_time)"
)
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,128}\Z")


@dataclass(frozen=True, slots=True)
class Problem:
    """One refused entry of `[sysctl.desired]`; `name` is printable (see `printable`)."""

    name: str
    reason: str
    value: object = None  # the refused entry's value, as given

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


def printable(name: str) -> str:
    """The name itself when it is short printable ASCII, else its repr: safe to print or log.

    >>> printable("net.ipv4.tcp_fin_timeout"), printable("net.ipv4.x\\n")
    ('net.ipv4.tcp_fin_timeout', "'net.ipv4.x\\\\n'")
    """
    if _PRINTABLE.match(name):
        return name
    return repr(name[:128])


def name_problem(name: object) -> str | None:
    """Why `name` is not an allowed sysctl name, or None when it is."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        return _BAD_NAME
    if name not in CATALOG:
        return f"not a sysctl tcpwatchd audits (known: {', '.join(NAMES)})"
    return None


def value_problem(name: str, value: object) -> str | None:
    """Why `value` is not acceptable for the catalogued sysctl `name`, or None when it is."""
    spec = spec_of(name)
    if spec is None:
        return "not a sysctl tcpwatchd audits"
    # bool is an int subclass; `true` in TOML is never a sysctl value.
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{printable(repr(value))} is not an integer"
    if not spec.accepts(value):
        return f"{value} is outside the allowed range {spec.minimum}..{spec.maximum} {spec.unit.value}"
    return None


def find_problems(desired: Mapping[str, object]) -> list[Problem]:
    """Every refused entry, in the table's order: a bad name, else a bad value."""
    problems: list[Problem] = []
    for name, value in desired.items():
        shown = printable(name) if isinstance(name, str) else repr(name)
        reason = name_problem(name)
        if reason is None:
            assert isinstance(name, str)
            reason = value_problem(name, value)
        if reason is not None:
            problems.append(Problem(shown, reason, value))
    return problems


def validate_desired(desired: dict[str, int]) -> list[str]:
    """Error strings for `[sysctl.desired]`, each naming its sysctl; empty when every entry is fine."""
    return [str(p) for p in find_problems(desired)]


def check_desired(desired: dict[str, int]) -> dict[str, int]:
    """For a pydantic field validator: `desired` unchanged, or a ValidationError with one error per refused
    entry, located at its key (so config errors read `sysctl.desired.<name>: <reason>`)."""
    problems = find_problems(desired)
    if not problems:
        return desired
    errors = [
        InitErrorDetails(
            type=PydanticCustomError("sysctl_desired", "{reason}", {"reason": p.reason}),
            loc=(p.name,),
            input=p.value,
        )
        for p in problems
    ]
    raise ValidationError.from_exception_data("sysctl.desired", errors)
