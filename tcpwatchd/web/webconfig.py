"""The exporter-toolkit web config (`--web.config.file` of every Prometheus exporter), validated whole.

Format: prometheus/exporter-toolkit docs/web-configuration.md. Supported: `tls_server_config` (cert_file,
key_file or inline cert/key, client_ca_file or inline client_ca, client_auth_type, client_allowed_sans,
min_version, max_version, prefer_server_cipher_suites), `http_server_config` (headers; http2 is accepted
and ignored: this server speaks HTTP/1.1) and `basic_auth_users` (bcrypt hashes). Keys tcpwatchd cannot
honour with Python's ssl module (cipher_suites, curve_preferences, rate_limit, RequireAnyClientCert) are
refused with the reason, never silently ignored. Relative paths are relative to the file's directory, as
in exporter-toolkit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tcpwatchd.config import ConfigError
from tcpwatchd.saferead import FileRefused, read_regular_file

ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TLSVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
# $2a$, $2b$, $2y$ (htpasswd -B writes 2y), two-digit cost, 22 salt + 31 hash characters.
_BCRYPT = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")
_HEADER_VALUES = {"X-Frame-Options": ("deny", "sameorigin"), "X-Content-Type-Options": ("nosniff",)}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


def _unsupported(what: str) -> Any:
    return Field(None, description=f"refused: {what}")


class TLSServerConfig(_Strict):
    cert_file: str = ""
    key_file: str = ""
    cert: str = ""
    key: str = Field("", repr=False)
    client_ca_file: str = ""
    client_ca: str = ""
    client_auth_type: ClientAuth = "NoClientCert"
    client_allowed_sans: list[str] = []
    min_version: TLSVersion = "TLS12"
    max_version: TLSVersion = "TLS13"
    prefer_server_cipher_suites: bool = True
    cipher_suites: list[str] | None = _unsupported("cipher suites")
    curve_preferences: list[str] | None = _unsupported("curves")

    @field_validator("cipher_suites", "curve_preferences")
    @classmethod
    def _refused(cls, value: list[str] | None) -> None:
        if value is not None:
            raise ValueError("not supported by tcpwatchd (Python's TLS uses OpenSSL's defaults): remove it")

    @field_validator("client_auth_type")
    @classmethod
    def _verifiable(cls, value: str) -> str:
        if value == "RequireAnyClientCert":
            raise ValueError(
                "not supported (it accepts any self-signed certificate, so it authenticates nobody): "
                "use RequireAndVerifyClientCert with client_ca_file"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TLSServerConfig:
        problems = list(_tls_problems(self))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def enabled(self) -> bool:
        """Like exporter-toolkit: no certificate and no client CA means plain HTTP."""
        return bool(self.cert_file or self.cert or self.key_file or self.key or self.has_client_ca)

    @property
    def has_client_ca(self) -> bool:
        return bool(self.client_ca_file or self.client_ca)


def _tls_problems(t: TLSServerConfig) -> list[str]:
    order = ("TLS10", "TLS11", "TLS12", "TLS13")
    out = []
    if (t.cert_file and t.cert) or (t.key_file and t.key) or (t.client_ca_file and t.client_ca):
        out.append("give a file or the inline PEM, not both")
    if t.enabled and not (t.cert_file or t.cert):
        out.append("cert_file (or cert) is required")
    if t.enabled and not (t.key_file or t.key):
        out.append("key_file (or key) is required")
    verifying = t.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
    if verifying and not t.has_client_ca:
        out.append(f"client_auth_type {t.client_auth_type} needs client_ca_file")
    if t.has_client_ca and not verifying:
        out.append("client_ca_file is set but client_auth_type does not verify client certificates")
    if t.client_allowed_sans and t.client_auth_type != "RequireAndVerifyClientCert":
        out.append("client_allowed_sans needs client_auth_type RequireAndVerifyClientCert")
    if order.index(t.min_version) > order.index(t.max_version):
        out.append(f"min_version {t.min_version} is above max_version {t.max_version}")
    return out


class HeadersConfig(_Strict):
    content_security_policy: str = Field("", alias="Content-Security-Policy")
    x_frame_options: str = Field("", alias="X-Frame-Options")
    x_content_type_options: str = Field("", alias="X-Content-Type-Options")
    x_xss_protection: str = Field("", alias="X-XSS-Protection")
    strict_transport_security: str = Field("", alias="Strict-Transport-Security")

    @model_validator(mode="after")
    def _values(self) -> HeadersConfig:
        for name, value in self.pairs():
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"{name}: control characters are not allowed")
            allowed = _HEADER_VALUES.get(name)
            if allowed and value.lower() not in allowed:
                raise ValueError(f"{name}: must be one of {', '.join(allowed)} (got {value!r})")
        return self

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """(name, value) for every header set, in the spelling of the file."""
        fields = type(self).model_fields
        return tuple((str(fields[k].alias), v) for k, v in self if v)


class HTTPServerConfig(_Strict):
    http2: bool = True  # accepted for compatibility; this server speaks HTTP/1.1 only
    headers: HeadersConfig = HeadersConfig()


class WebConfig(_Strict):
    tls_server_config: TLSServerConfig = TLSServerConfig()
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    basic_auth_users: dict[str, str] = Field(default_factory=dict, repr=False)
    rate_limit: dict[str, Any] | None = _unsupported("rate limiting")

    @field_validator("rate_limit")
    @classmethod
    def _no_rate_limit(cls, value: object) -> None:
        if value is not None:
            raise ValueError("not supported by tcpwatchd: remove it (connections are capped instead)")

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        bad = sorted(u for u, h in users.items() if not _BCRYPT.match(h))
        if bad:
            raise ValueError(f"not a bcrypt hash (htpasswd -nBC 10 '' | tr -d ':\\n') for: {', '.join(bad)}")
        if any(":" in u for u in users):
            raise ValueError("a user name cannot contain ':' (RFC 7617)")
        return users


def parse_web_config(text: str, source: str, base_dir: Path) -> WebConfig:
    """Validate YAML text; relative file names are resolved against `base_dir`. Raises ConfigError."""
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError(
            source, [f"YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}"]
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["<root>: must be a mapping"])
    try:
        cfg = WebConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, [_describe(err) for err in e.errors()]) from None
    return _resolved(cfg, base_dir)


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate the file (regular, at most 1 MiB). Certificates are checked by tls.TLSContexts."""
    try:
        text = read_regular_file(path).decode("utf-8")
    except (OSError, UnicodeDecodeError, FileRefused) as e:
        raise ConfigError(str(path), [f"cannot read: {e}"]) from None
    return parse_web_config(text, str(path), Path(path).parent)


def _resolved(cfg: WebConfig, base_dir: Path) -> WebConfig:
    t = cfg.tls_server_config
    update = {
        k: str(base_dir / v)
        for k, v in (
            ("cert_file", t.cert_file),
            ("key_file", t.key_file),
            ("client_ca_file", t.client_ca_file),
        )
        if v
    }
    return cfg.model_copy(update={"tls_server_config": t.model_copy(update=update)})


def _describe(err: Any) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    elif _echoable(loc, err.get("input")):
        msg = f"{msg} (got {err['input']!r})"
    return f"{loc}: {msg}"


def _echoable(loc: str, value: object) -> bool:
    """Scalars are shown back, except secrets (passwords' hashes, inline keys)."""
    secret = "basic_auth_users" in loc or loc.endswith(".key")
    return isinstance(value, str | int | float | bool) and not secret
