"""The configuration: a TOML file validated whole by pydantic, or the embedded default.

Every section refuses unknown keys, so a typo is an error rather than a silently ignored setting.
`load_config` reports every problem at once, each with its dotted field path.

The `[detect]` table is not written here: each detector declares its own section (detectors/registry.py),
and `config_model()` builds `[detect]` from the registry, one field per detector. Importing this module
imports the detectors package, which registers them all.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, StrictInt, ValidationError, create_model, field_validator, model_validator

from tcpwatchd.detectors.registry import generation, registered
from tcpwatchd.rules_config import MAX_RULES, IgnoreConfig, OverrideRule, override_model, partial_settings
from tcpwatchd.saferead import MAX_CONFIG_BYTES, FileRefused, read_regular_file
from tcpwatchd.sections import DetectSections, Section


class ConfigError(Exception):
    """An unusable config: `problems` lists every error as 'field: reason'."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def render(self) -> str:
        lines = [f"invalid config {self.source}:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class DaemonConfig(Section):
    poll_interval_seconds: float = Field(
        10.0, ge=0.1, le=3600, description="Seconds between polls; detectors' ages are measured per poll."
    )
    source: Literal["auto", "sockdiag", "procnet"] = Field(
        "auto", description="Socket source: netlink sock_diag, /proc/net/tcp*, or auto (netlink, else /proc)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    process_facts_refresh_seconds: float = Field(
        30.0,
        ge=0.1,
        le=3600,
        description="How often each process's open fds and fd limit are re-read (fd exhaustion forecast).",
    )


class ExporterConfig(Section):
    listen_address: str = "127.0.0.1"
    port: int = Field(9814, ge=1, le=65535)
    web_config_file: str = Field(
        "", description="exporter-toolkit web config (TLS, client certificates, basic auth); '': plain HTTP."
    )
    max_process_label_values: int = Field(
        1000, ge=1, description="Distinct `process` values exported per metric; the rest are aggregated."
    )

    @field_validator("listen_address")
    @classmethod
    def _is_ip(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError as e:
            raise ValueError(f"not an IP address: {value!r}") from e
        return value


DEFAULT_DESIRED_SYSCTLS: dict[str, int] = {
    "net.ipv4.tcp_keepalive_time": 600,
    "net.ipv4.tcp_keepalive_intvl": 30,
    "net.ipv4.tcp_keepalive_probes": 5,
}


# "pod:<namespace>/<pod>" with shell globs (* ? [...]) over Kubernetes names, or "*" for every namespace.
NAMESPACE_SELECTOR = re.compile(r"\*|pod:[a-z0-9*?\[\]-]{1,63}/[a-z0-9.*?\[\]-]{1,253}\Z")


class SysctlConfig(Section):
    mode: Literal["off", "audit", "enforce"] = "audit"
    desired: dict[str, StrictInt] = Field(default_factory=lambda: dict(DEFAULT_DESIRED_SYSCTLS))
    enforce_namespaces: list[str] = Field(
        default_factory=list,
        max_length=256,
        description='Other network namespaces enforce also writes, by selector ("pod:kube-system/*", "*"); '
        "by default only tcpwatchd's own namespace is written (docs/sysctl.md says why).",
    )

    @field_validator("enforce_namespaces")
    @classmethod
    def _selectors(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not NAMESPACE_SELECTOR.fullmatch(v)]
        if bad:
            raise ValueError(
                f"not a namespace selector: {', '.join(map(repr, bad))} "
                '(expected "pod:<namespace>/<pod>" with * ? [] globs, or "*")'
            )
        return value

    @field_validator("desired")
    @classmethod
    def _known_sysctls(cls, value: dict[str, int]) -> dict[str, int]:
        # Names are checked against a static catalog (no /proc access): path tricks never reach a write.
        from tcpwatchd.sysctl.policy import check_desired

        return check_desired(value)


class NamespacesConfig(Section):
    watch: Literal["all", "own"] = Field(
        "all", description="Watch every network namespace on the host (containers, pods) or only our own."
    )
    host_root: str = Field(
        "/",
        min_length=1,
        description="Where /var/log/containers, /var/log/pods and /var/lib/docker are read (pod names).",
    )
    labels: bool = Field(True, description="Label per-process series with namespace, pod and container.")


class ConfigBase(Section):
    """The whole config; `detect` is typed by the registry-built model (see `config_model`)."""

    daemon: DaemonConfig = DaemonConfig()
    exporter: ExporterConfig = ExporterConfig()
    detect: DetectSections = DetectSections()
    sysctl: SysctlConfig = SysctlConfig()
    namespaces: NamespacesConfig = NamespacesConfig()
    override: list[OverrideRule] = Field(default_factory=list, max_length=MAX_RULES)
    ignore: IgnoreConfig = IgnoreConfig()

    @model_validator(mode="after")
    def _overrides_apply(self) -> ConfigBase:
        """Each rule's settings merged onto its `[detect.<name>]` must be valid settings (cross-field
        checks a detector may declare see the merged values)."""
        for position, rule in enumerate(self.override, 1):
            for spec in registered():
                changes = rule.settings_for(spec.name)
                if changes:
                    try:
                        base = spec.settings_in(self.detect).model_dump()
                        spec.settings.model_validate({**base, **changes})
                    except ValidationError as e:
                        first = e.errors()[0]
                        raise ValueError(f"override[{position}].detect.{spec.name}: {first['msg']}") from None
        return self


@functools.cache
def _models(registry_generation: int) -> tuple[type[DetectSections], type[ConfigBase]]:
    sections: dict[str, Any] = {
        spec.name: (spec.settings, Field(default_factory=spec.settings)) for spec in registered()
    }
    detect = create_model("DetectConfig", __base__=DetectSections, **sections)
    rule = override_model({spec.name: partial_settings(spec.settings) for spec in registered()})
    config = create_model(
        "Config",
        __base__=ConfigBase,
        detect=(detect, Field(default_factory=detect)),
        override=(list[rule], Field(default_factory=list, max_length=MAX_RULES)),  # type: ignore[valid-type]
    )
    return detect, config


def config_model() -> type[ConfigBase]:
    """The Config model for the detectors registered now (rebuilt when the registry changes)."""
    return _models(generation())[1]


if TYPE_CHECKING:
    Config = ConfigBase
    DetectConfig = DetectSections
else:
    # The models for every detector in the package; a detector registered later (a test's toy) is seen
    # by `config_model()`, `default_config()` and `parse_config()`, which rebuild on a registry change.
    DetectConfig, Config = _models(generation())


DEFAULT_SOURCE = "<embedded default>"


def default_config() -> Config:
    """The embedded default: safe everywhere (audit only, metrics on 127.0.0.1)."""
    return config_model()()


MAX_NESTING = 16  # the schema is 4 levels deep; anything far deeper is an attack or an accident


def parse_config(text: str, source: str = "<string>") -> Config:
    """Parse and validate TOML text; raises ConfigError listing every problem."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(source, [f"larger than {MAX_CONFIG_BYTES} bytes"])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, [f"TOML syntax: {e}"]) from None
    except RecursionError:  # tomllib recurses per nested array or inline table
        raise ConfigError(source, [f"nested deeper than {MAX_NESTING} levels"]) from None
    if _depth_exceeds(data, MAX_NESTING):
        raise ConfigError(source, [f"nested deeper than {MAX_NESTING} levels"])
    try:
        return config_model().model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, [_describe(err) for err in e.errors()]) from None


def load_config(path: str | Path | None) -> Config:
    """Read `path` (None means the embedded default) and validate it whole.

    A FIFO, a device, a directory or a file over 1 MiB is refused before reading (see saferead).
    """
    if path is None:
        return default_config()
    try:
        text = read_regular_file(path).decode("utf-8")
    except (OSError, UnicodeDecodeError, FileRefused) as e:
        raise ConfigError(str(path), [f"cannot read: {e}"]) from None
    return parse_config(text, str(path))


def _depth_exceeds(data: object, limit: int) -> bool:
    """Whether lists/dicts nest deeper than `limit`, without recursion (repr and pydantic would recurse)."""
    stack: list[tuple[object, int]] = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in _children(item))
    return False


def _children(item: object) -> Iterator[object]:
    if isinstance(item, dict):
        yield from item.values()
    elif isinstance(item, list):
        yield from item


def _describe(err: object) -> str:
    """'detect.phantom.idle_seconds: Input should be greater than 0 (got -1)'; a list item is named by
    its position counted from 1, as a person counts `[[override]]` tables: 'override[2].match: ...'."""
    assert isinstance(err, dict)
    loc = _location(err.get("loc", ()))
    msg = str(err.get("msg", "invalid"))
    if not loc and msg.startswith("Value error, "):  # a whole-config check names its own position
        return msg.removeprefix("Value error, ")
    loc = loc or "<root>"
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    elif "input" in err and not isinstance(err["input"], dict):
        msg = f"{msg} (got {err['input']!r})"
    return f"{loc}: {msg}"


def _location(loc: object) -> str:
    """('override', 1, 'detect', 'phantom') -> 'override[2].detect.phantom'."""
    out = ""
    for part in loc if isinstance(loc, tuple) else ():
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
