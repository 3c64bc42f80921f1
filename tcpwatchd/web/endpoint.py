"""The daemon's HTTP endpoint: /metrics and the JSON routes on `[exporter]`'s address, with its web config.

`bind()` at start, `rebind()` on every SIGHUP: the web config file is re-read each time (a bad one raises
ConfigError and changes nothing), the listener moves only when the address or port changed (a failed
move raises OSError and keeps the old one serving).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from tcpwatchd.config import ExporterConfig
from tcpwatchd.web.auth import BasicAuth
from tcpwatchd.web.routes import JsonHandler, Site, metrics_handler
from tcpwatchd.web.server import Limits, WebServer
from tcpwatchd.web.tls import TLSContexts
from tcpwatchd.web.webconfig import load_web_config

log = logging.getLogger("tcpwatchd")


@dataclass(frozen=True, slots=True)
class WebSetup:
    """A loaded web config: what the server needs to apply it."""

    site: Site
    tls: TLSContexts | None

    @classmethod
    def load(cls, path: str) -> WebSetup:
        """'' is plain HTTP without auth. Raises ConfigError (every field, or the unreadable cert)."""
        if not path:
            return cls(Site(), None)
        cfg = load_web_config(path)
        t = cfg.tls_server_config
        tls = TLSContexts(t, source=path) if t.enabled else None
        auth = BasicAuth(cfg.basic_auth_users) if cfg.basic_auth_users else None
        headers = cfg.http_server_config.headers.pairs()
        return cls(Site(auth, headers, frozenset(t.client_allowed_sans)), tls)


class MetricsEndpoint:
    def __init__(self, registry: CollectorRegistry, limits: Limits | None = None) -> None:
        self.server = WebServer(limits or Limits())
        self.server.route_raw("/metrics", metrics_handler(registry))
        self.bound: ExporterConfig | None = None
        self._setup = WebSetup(Site(), None)

    def route(self, path: str, handler: JsonHandler) -> None:
        """Add a JSON route: handler(query: dict[str, str]) -> (status, json-serialisable body)."""
        self.server.route(path, handler)

    def bind(self, cfg: ExporterConfig) -> None:
        """Start serving; ConfigError for a bad web config, OSError when the address cannot be bound."""
        setup = WebSetup.load(cfg.web_config_file)
        self._apply(setup)
        self.server.listen(cfg.listen_address, cfg.port)
        self.bound = cfg
        self._announce(cfg)

    def rebind(self, cfg: ExporterConfig) -> None:
        """Apply a reloaded [exporter] section; on any error the old address and web config stay."""
        setup = WebSetup.load(cfg.web_config_file)
        old_cfg, old_setup = self.bound, self._setup
        self._apply(setup)
        try:
            if old_cfg is None or (cfg.listen_address, cfg.port) != (old_cfg.listen_address, old_cfg.port):
                self._move(cfg, old_cfg)
        except OSError:
            self._apply(old_setup)
            raise
        self.bound = cfg
        self._announce(cfg)

    def close(self) -> None:
        self.server.close()

    def _move(self, cfg: ExporterConfig, old: ExporterConfig | None) -> None:
        try:
            self.server.listen(cfg.listen_address, cfg.port)
        except OSError as e:
            # 0.0.0.0:9814 -> 127.0.0.1:9814 collides with itself: release the old address, then retry.
            if e.errno != errno.EADDRINUSE or old is None or old.port != cfg.port:
                raise
            self.server.stop_listening()
            try:
                self.server.listen(cfg.listen_address, cfg.port)
            except OSError:
                self.server.listen(old.listen_address, old.port)
                raise

    def _apply(self, setup: WebSetup) -> None:
        self.server.tls, self.server.site = setup.tls, setup.site
        self._setup = setup

    def _announce(self, cfg: ExporterConfig) -> None:
        scheme = "https" if self._setup.tls is not None else "http"
        auth = ", basic auth" if self._setup.site.auth is not None else ""
        log.info("serving metrics on %s://%s/metrics%s", scheme, hostport(cfg), auth)
        if self._setup.tls is None and not ipaddress.ip_address(cfg.listen_address).is_loopback:
            log.warning(
                "metrics are served over plain HTTP on %s, reachable from the network: every process "
                "name and finding is readable by anyone who can connect; set [exporter] web_config_file "
                "for TLS and basic auth",
                hostport(cfg),
            )


def hostport(cfg: ExporterConfig) -> str:
    host = f"[{cfg.listen_address}]" if ":" in cfg.listen_address else cfg.listen_address
    return f"{host}:{cfg.port}"
