"""The server's SSLContext, built from `tls_server_config` and rebuilt when the certificate files change.

Certificates rotate (cert-manager, certbot) without a restart: `TLSContexts.current()` stats the files at
most every `check_seconds` and builds a new context when one changed. A half-written or broken new pair
keeps the old context serving and is logged once.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tcpwatchd.config import ConfigError
from tcpwatchd.saferead import FileRefused, read_regular_file
from tcpwatchd.web.webconfig import TLSServerConfig

log = logging.getLogger("tcpwatchd")

_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# RequestClientCert asks for a certificate and ignores it (Go's crypto/tls): with OpenSSL a requested
# certificate is always verified, so it is served as NoClientCert, which admits exactly the same clients.
_VERIFY = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


def build_context(cfg: TLSServerConfig, source: str = "web config") -> ssl.SSLContext:
    """An SSLContext for the server side; ConfigError names the field that could not be loaded."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[cfg.min_version]
    ctx.maximum_version = _VERSIONS[cfg.max_version]
    if cfg.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    cert = _pem(cfg.cert_file, cfg.cert, "cert_file", source)
    key = _pem(cfg.key_file, cfg.key, "key_file", source)
    try:
        _load_chain(ctx, cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(source, [f"tls_server_config.cert_file/key_file: cannot load: {e}"]) from None
    ctx.verify_mode = _VERIFY[cfg.client_auth_type]
    if cfg.has_client_ca:
        ca = _pem(cfg.client_ca_file, cfg.client_ca, "client_ca_file", source)
        try:
            ctx.load_verify_locations(cadata=ca.decode("ascii"))
        except (ssl.SSLError, ValueError) as e:
            raise ConfigError(source, [f"tls_server_config.client_ca_file: cannot load: {e}"]) from None
    return ctx


def _pem(path: str, inline: str, field: str, source: str) -> bytes:
    if not path:
        return inline.encode("ascii", errors="replace")
    try:
        return read_regular_file(path)
    except (OSError, FileRefused) as e:
        raise ConfigError(source, [f"tls_server_config.{field}: cannot read {path}: {e}"]) from None


def _load_chain(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """load_cert_chain() takes only paths: hand it anonymous in-memory files, already read and capped
    (so a FIFO or a huge file named as the key cannot block or bloat us, and inline PEM works too)."""
    fds = []
    try:
        for data in (cert, key):
            fd = os.memfd_create("tcpwatchd-tls", os.MFD_CLOEXEC)
            fds.append(fd)
            os.write(fd, data)
        ctx.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}", password=_no_password)
    finally:
        for fd in fds:
            os.close(fd)


def _no_password() -> str:
    raise ssl.SSLError("the key is encrypted: give an unencrypted key")


def _signature(cfg: TLSServerConfig) -> tuple[tuple[int, int, int], ...]:
    """(inode, size, mtime) of each file: changes when a file is rewritten or replaced by a rename."""
    out = []
    for path in (cfg.cert_file, cfg.key_file, cfg.client_ca_file):
        if not path:
            continue
        try:
            st = Path(path).stat()
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((0, 0, 0))
    return tuple(out)


class TLSContexts:
    """The current context for `cfg`, rebuilt after a file changes (checked at most every few seconds)."""

    def __init__(
        self,
        cfg: TLSServerConfig,
        source: str = "web config",
        check_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self._source = source
        self._check_seconds = check_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._signature = _signature(cfg)
        self._context = build_context(cfg, source)  # raises ConfigError: a bad file is refused at load
        self._checked = clock()
        self._failed_signature: tuple[tuple[int, int, int], ...] | None = None

    def current(self) -> ssl.SSLContext:
        with self._lock:
            if self._clock() - self._checked >= self._check_seconds:
                self._checked = self._clock()
                self._maybe_rebuild()
            return self._context

    def _maybe_rebuild(self) -> None:
        signature = _signature(self.cfg)
        if signature in (self._signature, self._failed_signature):
            return
        try:
            self._context = build_context(self.cfg, self._source)
        except ConfigError as e:
            self._failed_signature = signature
            log.warning("certificate files changed but cannot be loaded, still serving the old ones: %s", e)
            return
        self._signature, self._failed_signature = signature, None
        log.info("certificate files changed: serving the new certificate")
