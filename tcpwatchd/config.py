"""The configuration: a TOML file validated whole by pydantic, or the embedded default.

Every section refuses unknown keys, so a typo is an error rather than a silently ignored setting.
`load_config` reports every problem at once, each with its dotted field path.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)


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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class DaemonConfig(_Section):
    poll_interval_seconds: float = Field(
        10.0, ge=0.1, le=3600, description="Seconds between polls; detectors' ages are measured per poll."
    )
    source: Literal["auto", "sockdiag", "procnet"] = Field(
        "auto", description="Socket source: netlink sock_diag, /proc/net/tcp*, or auto (netlink, else /proc)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class ExporterConfig(_Section):
    listen_address: str = "127.0.0.1"
    port: int = Field(9814, ge=1, le=65535)

    @field_validator("listen_address")
    @classmethod
    def _is_ip(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError as e:
            raise ValueError(f"not an IP address: {value!r}") from e
        return value


class CloseWaitConfig(_Section):
    enabled: bool = True
    min_age_seconds: float = Field(300.0, ge=0)


class PhantomConfig(_Section):
    enabled: bool = True
    idle_seconds: float = Field(900.0, gt=0)
    # Probing (docs/probing.md): off changes nothing; verify restores the socket's options; reap also
    # destroys superseded phantoms that never answer.
    probe: Literal["off", "verify", "reap"] = "off"
    probe_allow: list[str] = Field(
        default_factory=list,
        description="Who may be probed: 'process:GLOB', 'unit:GLOB', 'pod:NS/NAME-GLOB'.",
    )
    # TCP_KEEPIDLE and TCP_KEEPINTVL accept 1..32767 s (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL in net/tcp.h).
    probe_idle_seconds: int = Field(1, ge=1, le=32767)
    probe_interval_seconds: int = Field(1, ge=1, le=32767)
    # Unanswered probes that prove a peer unreachable; the armed TCP_KEEPCNT is 127 (the kernel's maximum),
    # so the kernel never gives up before tcpwatchd has judged.
    probe_budget: int = Field(5, ge=1, le=100)
    probe_max_per_poll: int = Field(8, ge=1, le=1024, description="New probes started per poll, host-wide.")
    probe_max_per_process: int = Field(2, ge=1, le=1024, description="Probes in flight at once per process.")
    probe_max_in_flight: int = Field(64, ge=1, le=4096, description="Probes in flight at once, host-wide.")
    dry_run: bool = False

    @field_validator("probe_allow")
    @classmethod
    def _allow_rules(cls, value: list[str]) -> list[str]:
        from tcpwatchd.actions.allow import parse_allowlist

        parse_allowlist(value)
        return value

    @model_validator(mode="after")
    def _probe_consistent(self) -> PhantomConfig:
        if self.probe == "off":
            return self
        if not self.probe_allow:
            raise ValueError(
                "probe is on but probe_allow is empty: list who may be probed ('process:*' for all)"
            )
        if self.probe_idle_seconds >= self.idle_seconds:
            raise ValueError(
                "probe_idle_seconds must be below idle_seconds, or a probe would wait for idleness"
            )
        if max(self.probe_max_per_poll, self.probe_max_per_process) > self.probe_max_in_flight:
            raise ValueError("probe_max_per_poll and probe_max_per_process cannot exceed probe_max_in_flight")
        return self


class ReconnectStormConfig(_Section):
    enabled: bool = True
    window_seconds: float = Field(300.0, gt=0)
    min_new_connections: int = Field(10, ge=2)


class KeepaliveOffConfig(_Section):
    enabled: bool = True


class StalledReceiveConfig(_Section):
    enabled: bool = True
    min_age_seconds: float = Field(60.0, ge=0)


class UnresponsivePeerConfig(_Section):
    enabled: bool = True
    min_retransmits: int = Field(3, ge=1, le=255)


class DetectConfig(_Section):
    close_wait: CloseWaitConfig = CloseWaitConfig()
    phantom: PhantomConfig = PhantomConfig()
    reconnect_storm: ReconnectStormConfig = ReconnectStormConfig()
    keepalive_off: KeepaliveOffConfig = KeepaliveOffConfig()
    stalled_receive: StalledReceiveConfig = StalledReceiveConfig()
    unresponsive_peer: UnresponsivePeerConfig = UnresponsivePeerConfig()


DEFAULT_DESIRED_SYSCTLS: dict[str, int] = {
    "net.ipv4.tcp_keepalive_time": 600,
    "net.ipv4.tcp_keepalive_intvl": 30,
    "net.ipv4.tcp_keepalive_probes": 5,
}


class SysctlConfig(_Section):
    mode: Literal["off", "audit", "enforce"] = "audit"
    desired: dict[str, StrictInt] = Field(default_factory=lambda: dict(DEFAULT_DESIRED_SYSCTLS))

    @field_validator("desired")
    @classmethod
    def _known_sysctls(cls, value: dict[str, int]) -> dict[str, int]:
        # Names are checked against a static catalog (no /proc access): path tricks never reach a write.
        from tcpwatchd.sysctl.policy import check_desired

        return check_desired(value)


class Config(_Section):
    daemon: DaemonConfig = DaemonConfig()
    exporter: ExporterConfig = ExporterConfig()
    detect: DetectConfig = DetectConfig()
    sysctl: SysctlConfig = SysctlConfig()


DEFAULT_SOURCE = "<embedded default>"


def default_config() -> Config:
    """The embedded default: safe everywhere (audit only, metrics on 127.0.0.1)."""
    return Config()


def parse_config(text: str, source: str = "<string>") -> Config:
    """Parse and validate TOML text; raises ConfigError listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, [f"TOML syntax: {e}"]) from None
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, [_describe(err) for err in e.errors()]) from None


def load_config(path: str | Path | None) -> Config:
    """Read `path` (None means the embedded default) and validate it whole."""
    if path is None:
        return default_config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), [f"cannot read: {e}"]) from None
    return parse_config(text, str(path))


def _describe(err: object) -> str:
    """'detect.phantom.idle_seconds: Input should be greater than 0 (got -1)'."""
    assert isinstance(err, dict)
    loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    elif "input" in err and not isinstance(err["input"], dict):
        msg = f"{msg} (got {err['input']!r})"
    return f"{loc}: {msg}"
