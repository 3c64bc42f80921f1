"""`tcpwatchd run`: poll on the configured interval, serve /metrics, talk to systemd, obey signals.

SIGTERM/SIGINT stop cleanly (exit 0). SIGHUP reloads the config file: a bad new config is logged and
the old one kept. The signal handlers only set flags; the loop does the work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import select
import signal
import time
from types import FrameType

from prometheus_client import CollectorRegistry, ProcessCollector

from tcpwatchd.config import Config, ConfigError, load_config
from tcpwatchd.logs import setup_logging
from tcpwatchd.outputs.announce import Announcer
from tcpwatchd.outputs.api import API_PATH, api_handler
from tcpwatchd.outputs.budget import SeriesBudget
from tcpwatchd.outputs.probe_log import ProbeLog
from tcpwatchd.outputs.prometheus import DurationHistogram, LatestPoll, TcpwatchdCollector
from tcpwatchd.outputs.series import SeriesLabels
from tcpwatchd.poller import Poller, PollResult
from tcpwatchd.pollerrors import PollErrors
from tcpwatchd.sdnotify import Notifier
from tcpwatchd.web.endpoint import MetricsEndpoint
from tcpwatchd.web.endpoint import hostport as _hostport

log = logging.getLogger("tcpwatchd")

EXIT_OK = 0
EXIT_STARTUP = 1
EXIT_CONFIG = 2


class _Signals:
    """Flags set by signal handlers, and a self-pipe that wakes the loop.

    A handler must not take a lock (threading.Event.set() does: if the signal lands while the main
    thread holds that lock, the daemon deadlocks), so it only sets a flag and writes one byte.
    """

    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.stop = False
        self.reload = False

    def wait(self, timeout: float) -> None:
        """Sleep until `timeout` passes or a signal arrives."""
        readable, _, _ = select.select([self._r], [], [], timeout)
        if readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._r, 4096)

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop = True
        self._poke()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reload = True
        self._poke()

    def _poke(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._w, b"!")


class Daemon:
    def __init__(self, cfg: Config, config_path: str | None) -> None:
        self._cfg = cfg
        self._path = config_path
        self._signals = _Signals()
        self._notifier = Notifier()
        self._latest = LatestPoll(SeriesBudget(cfg.exporter.max_process_label_values, _series(cfg)))
        self._durations = DurationHistogram()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(TcpwatchdCollector(self._latest, self._durations))
        registry.register(ProcessCollector(registry=None))
        self._poll_errors = PollErrors()
        registry.register(self._poll_errors)
        self._server = MetricsEndpoint(registry)
        self._server.route(API_PATH, api_handler(self._latest))  # same listener, TLS and auth as /metrics
        self._poller = Poller(cfg)
        self._announcer = Announcer()
        self._probe_log = ProbeLog()

    def run(self) -> int:
        self._signals.install()
        raise_fd_limit()
        try:
            self._server.bind(self._cfg.exporter)
        except ConfigError as e:
            log.error("invalid web config: %s", e)
            self._server.close()
            return EXIT_CONFIG
        except OSError as e:
            log.error("cannot serve metrics on %s: %s", _hostport(self._cfg.exporter), e)
            self._server.close()
            return EXIT_STARTUP
        try:
            self._poll()
            self._notifier.ready(self._status())
            log.info("started (config %s)", self._path or "embedded default")
            self._loop()
        finally:
            self._notifier.send("STOPPING=1")
            self._restore_probes()  # and the poller's sockets and threads (Poller.close)
            self._server.close()
            self._notifier.close()
        log.info("stopped")
        return EXIT_OK

    def _loop(self) -> None:
        next_poll = time.monotonic() + self._cfg.daemon.poll_interval_seconds
        while not self._signals.stop:
            self._signals.wait(self._wait_seconds(next_poll))
            if self._signals.stop:
                break
            if self._signals.reload:
                self._signals.reload = False
                if self._reload():
                    next_poll = time.monotonic()  # show the new config's view now, not an interval later
            self._notifier.watchdog()
            if time.monotonic() >= next_poll:
                self._poll()
                next_poll = max(next_poll + self._cfg.daemon.poll_interval_seconds, time.monotonic())
                self._notifier.status(self._status())

    def _wait_seconds(self, next_poll: float) -> float:
        wait = max(0.0, next_poll - time.monotonic())
        if self._notifier.watchdog_seconds is not None:
            wait = min(wait, self._notifier.watchdog_seconds / 2)  # sd_watchdog_enabled(3) advice
        return wait

    def _poll(self) -> None:
        """One poll; whatever it raises (RuntimeError: no thread; MemoryError) fails this poll only."""
        try:
            result: PollResult = self._poller.poll()
        except Exception as e:
            self._poll_errors.failed("poll", e)
            return
        self._poll_errors.succeeded()
        try:
            self._announcer.announce(result.report)
            if result.probes is not None:
                self._probe_log.log(result.probes.events)
        except Exception as e:  # a log sink that raises must not stop the metrics
            self._poll_errors.failed("announce", e)
        self._durations.observe(result.duration_seconds)
        self._latest.publish(result.retained())

    def _restore_probes(self) -> None:
        """Put back the keepalive options of every probe in flight (docs/probing.md), and log it."""
        try:
            self._probe_log.log(self._poller.close())
        except Exception as e:  # stopping must finish whatever a restore or a log sink raises
            log.error("restoring the probes in flight failed: %s", e)

    def _reload(self) -> bool:
        self._notifier.send(
            "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        )
        try:
            cfg = load_config(self._path)
        except ConfigError as e:
            log.error("reload refused, keeping the running config: %s", e)
            self._notifier.send("READY=1")
            return False
        try:
            self._server.rebind(cfg.exporter)  # always: the web config file may have changed alone
        except ConfigError as e:
            log.error("reload refused, keeping the running config: invalid web config: %s", e)
            self._notifier.send("READY=1")
            return False
        except OSError as e:
            log.error("reload refused: cannot serve metrics on %s: %s", _hostport(cfg.exporter), e)
            self._notifier.send("READY=1")
            return False
        self._cfg = cfg
        self._poller.reconfigure(cfg)
        self._latest.budget.reconfigure(cfg.exporter.max_process_label_values, _series(cfg))
        setup_logging(cfg.daemon.log_level)
        log.info("reloaded config %s", self._path or "embedded default")
        self._notifier.send("READY=1")
        return True

    def _status(self) -> str:
        result, _ = self._latest.get()
        if result is None:
            return "starting"
        snap = result.snapshot
        return (
            f"{result.socket_total} sockets, {len(result.report.findings)} findings, "
            f"last poll {result.duration_seconds * 1000:.0f} ms via {snap.source}"
        )


def _series(cfg: Config) -> SeriesLabels:
    return SeriesLabels(workload=cfg.namespaces.labels)


def raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: watching other namespaces holds two netlink sockets per
    namespace, and the usual soft limit of 1024 is near at ~500 containers. (The soft limit stays low for
    select(), which fails on fds above 1023; the one fd tcpwatchd selects on, the signal pipe, is opened
    first, and the web server uses epoll through selectors.)"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            log.debug("cannot raise the open file limit from %d to %d: %s", soft, hard, e)


def run_daemon(cfg: Config, config_path: str | None) -> int:
    setup_logging(cfg.daemon.log_level)
    return Daemon(cfg, config_path).run()
