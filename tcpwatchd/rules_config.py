"""`[[override]]` and `[ignore]`: per-service detector settings, and sockets left out of detection.

Models only (config.py assembles them, tcpwatchd/rules.py applies them to a poll). An override's
`detect.<name>` table is validated against a *partial* copy of that detector's settings model: the same
fields, types and bounds, each optional, unknown keys refused, so a rule names only what it changes.

    [[override]]
    match = { process = "java*", unit = "payments.service" }
    detect.phantom.idle_seconds = 3600
"""

from __future__ import annotations

import copy
import fnmatch
import ipaddress
from typing import Annotated, Any

from pydantic import AfterValidator, Field, create_model, model_validator

from tcpwatchd.sections import DetectorSettings, Section

MATCH_KEYS = ("process", "unit", "namespace", "pod", "container")
MAX_RULES = 256  # each rule may cost one more run of a detector per poll (see rules.py)
MAX_LIST = 4096


def matches(pattern: str, value: str) -> bool:
    """Exact, else a shell glob (fnmatch, case-sensitive): 'nginx' and 'ngin*' match 'nginx'.

    >>> matches("java*", "java-leaky"), matches("a[b", "a[b"), matches("api", "api-2")
    (True, True, False)
    """
    return value == pattern or fnmatch.fnmatchcase(value, pattern)


class OverrideMatch(Section):
    """Which processes a rule applies to: every key given must match (exact or glob); at least one key."""

    process: str | None = Field(None, min_length=1, description="process name (comm)")
    unit: str | None = Field(None, min_length=1, description="systemd unit, or the container id")
    namespace: str | None = Field(None, min_length=1, description="Kubernetes namespace")
    pod: str | None = Field(None, min_length=1, description="Kubernetes pod")
    container: str | None = Field(None, min_length=1, description="Kubernetes container name")

    @model_validator(mode="after")
    def _some_key(self) -> OverrideMatch:
        if all(getattr(self, key) is None for key in MATCH_KEYS):
            raise ValueError(f"match needs at least one of {', '.join(MATCH_KEYS)}")
        return self

    def given(self) -> tuple[tuple[str, str], ...]:
        """(key, pattern) for every key the rule sets."""
        return tuple((k, v) for k in MATCH_KEYS if (v := getattr(self, k)) is not None)


def partial_settings(settings: type[DetectorSettings]) -> type[Section]:
    """The model of an override's `detect.<name>`: the detector's fields and bounds, each optional."""
    fields: dict[str, Any] = {}
    for name, info in settings.model_fields.items():
        optional = copy.copy(info)
        optional.default = None
        optional.default_factory = None
        fields[name] = (info.annotation | None, optional)  # type: ignore[operator]
    model: type[Section] = create_model(f"{settings.__name__}Override", __base__=Section, **fields)
    return model


def _network(text: str) -> str:
    try:
        ipaddress.ip_network(text)
    except ValueError as e:
        raise ValueError(f"not a network in CIDR notation ({e})") from None
    return text


Port = Annotated[int, Field(ge=1, le=65535)]
Network = Annotated[str, AfterValidator(_network)]
Glob = Annotated[str, Field(min_length=1)]


class IgnoreConfig(Section):
    """Sockets left out of detection (never out of the state counts): e.g. the monitoring agent's own."""

    local_ports: list[Port] = Field(default_factory=list, max_length=MAX_LIST)
    remote_networks: list[Network] = Field(default_factory=list, max_length=MAX_LIST)
    processes: list[Glob] = Field(default_factory=list, max_length=MAX_LIST)

    @property
    def empty(self) -> bool:
        return not (self.local_ports or self.remote_networks or self.processes)


class OverrideRule(Section):
    """One `[[override]]` table. `detect` is typed per registry by config.py (`override_model`)."""

    name: str = Field("", max_length=200, description="the finding's `rule`; default override[N]")
    match: OverrideMatch
    detect: Section = Section()

    def label(self, position: int) -> str:
        """What findings say in `rule`: the rule's name, else its position counted from 1."""
        return self.name or f"override[{position}]"

    def settings_for(self, detector: str) -> dict[str, Any]:
        """The keys this rule sets for `detector` (empty when it names none)."""
        partial = getattr(self.detect, detector, None)
        return partial.model_dump(exclude_unset=True) if isinstance(partial, Section) else {}


def override_model(detect_fields: dict[str, type[Section]]) -> type[OverrideRule]:
    """The `[[override]]` model for the detectors given (name -> partial settings model)."""
    fields: dict[str, Any] = {name: (model | None, None) for name, model in detect_fields.items()}
    detect = create_model("OverrideDetect", __base__=Section, **fields)
    rule: type[OverrideRule] = create_model(
        "OverrideRule", __base__=OverrideRule, detect=(detect, Field(default_factory=detect))
    )
    return rule
