"""The probe allowlist: which processes, systemd units or Kubernetes pods tcpwatchd may probe.

A rule is `kind:glob` (shell-style, case-sensitive, `fnmatch.fnmatchcase`):
- `process:redis-server` matches the process name (comm, at most 15 characters);
- `unit:redis.service`, `unit:app-*.service` match the systemd unit;
- `pod:shop/api-*` matches `namespace/name` of the pod; the namespace part may be a glob too.
`process:*` allows every process. An empty list allows nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

COMM_MAX = 15  # TASK_COMM_LEN - 1 (include/linux/sched.h): a longer literal name never matches
_GLOB = frozenset("*?[")


class AllowKind(enum.Enum):
    PROCESS = "process"
    UNIT = "unit"
    POD = "pod"


@dataclass(frozen=True, slots=True)
class AllowRule:
    """One parsed rule.

    >>> parse_rule("pod:shop/api-*")
    AllowRule(kind=<AllowKind.POD: 'pod'>, glob='shop/api-*')
    """

    kind: AllowKind
    glob: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.glob}"


def parse_rule(text: str) -> AllowRule:
    """Parse `kind:glob`; ValueError says what is wrong."""
    kind_text, sep, glob = text.partition(":")
    kinds = ", ".join(k.value for k in AllowKind)
    if not sep or kind_text not in {k.value for k in AllowKind}:
        raise ValueError(f"{text!r}: a rule is 'kind:pattern' with kind one of {kinds}")
    if not glob or any(c.isspace() or not c.isprintable() for c in glob):
        raise ValueError(f"{text!r}: the pattern is empty or holds whitespace or control characters")
    kind = AllowKind(kind_text)
    literal = not _GLOB & set(glob)
    if kind is AllowKind.PROCESS and literal and len(glob) > COMM_MAX:
        raise ValueError(f"{text!r}: process names (comm) are at most {COMM_MAX} characters")
    if kind is AllowKind.UNIT and literal and "." not in glob:
        raise ValueError(f"{text!r}: a unit name has a suffix, e.g. 'unit:{glob}.service'")
    if kind is AllowKind.POD and (glob.count("/") != 1 or glob.startswith("/") or glob.endswith("/")):
        raise ValueError(f"{text!r}: a pod pattern is 'namespace/name', e.g. 'pod:shop/api-*'")
    return AllowRule(kind, glob)


def parse_allowlist(texts: Iterable[str]) -> tuple[AllowRule, ...]:
    """Every rule parsed; ValueError lists every bad one."""
    rules: list[AllowRule] = []
    problems: list[str] = []
    for text in texts:
        try:
            rules.append(parse_rule(text))
        except ValueError as e:
            problems.append(str(e))
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(rules)


def first_match(rules: Iterable[AllowRule], process: str, unit: str, pod: str) -> AllowRule | None:
    """The first rule that allows this owner (an empty unit or pod never matches), else None."""
    values = {AllowKind.PROCESS: process, AllowKind.UNIT: unit, AllowKind.POD: pod}
    for rule in rules:
        value = values[rule.kind]
        if value and fnmatchcase(value, rule.glob):
            return rule
    return None
