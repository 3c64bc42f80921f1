"""Command line: `tcpwatchd run | snapshot | top | audit | check-config`, `tcpwatchd --version`."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from tcpwatchd import __version__
from tcpwatchd.config import Config, ConfigError, load_config
from tcpwatchd.memory import pin_mmap_threshold

EXIT_OK = 0
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tcpwatchd",
        description="Watches the health of this host's TCP connections and exports it to Prometheus.",
    )
    p.add_argument("--version", action="version", version=f"tcpwatchd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("-c", "--config", help="TOML config file (default: the embedded default)")

    snap = sub.add_parser(
        "snapshot", help="the last poll per process and its findings (from the daemon, or polled here)"
    )
    snap.add_argument("-c", "--config", help="TOML config file: its [exporter] address is the daemon's")
    snap.add_argument("--json", action="store_true", help="print the API document (docs/api.md)")
    snap.add_argument("--local", action="store_true", help="poll here instead of asking the daemon")
    snap.add_argument(
        "--interval",
        type=_interval,
        default=0.0,
        metavar="SECONDS",
        help="poll here twice, this many seconds apart, so that ages and new connections show",
    )
    for name, what in (("process", "process name"), ("namespace", "Kubernetes namespace"), ("pod", "pod")):
        snap.add_argument(f"--{name}", default="", help=f"only this {what} (exact or a shell glob)")
    snap.add_argument("--kind", default="", help="only findings of this kind (close_wait, phantom, ...)")

    _top_parser(sub)

    audit = sub.add_parser(
        "audit", help="audit the TCP sysctls against the config (exit 0 ok, 1 drift, 2 error)"
    )
    audit.add_argument("-c", "--config", help="TOML config file (default: the embedded default)")
    audit.add_argument("--apply", action="store_true", help="write the desired values")
    audit.add_argument("--json", action="store_true", help="print JSON instead of a table")

    check = sub.add_parser("check-config", help="validate a config file; every error with its field")
    check.add_argument("file")
    return p


MAX_INTERVAL_SECONDS = 3600.0


def _interval(text: str) -> float:
    """A finite number of seconds in (0, 3600]: `inf` or `nan` would sleep forever or make no sense."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_INTERVAL_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and at most {MAX_INTERVAL_SECONDS:g}: {text!r}"
        )
    return value


def _top_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    top = sub.add_parser("top", help="live view of processes sorted by trouble (reads the daemon's API)")
    top.add_argument("-c", "--config", help="TOML config file: its [exporter] address is the daemon's")
    where = top.add_mutually_exclusive_group()
    where.add_argument("--url", help="the daemon's address (default: from the config, http://127.0.0.1:9814)")
    where.add_argument(
        "--local", action="store_true", help="poll in this process instead of reading a daemon"
    )
    top.add_argument(
        "--interval",
        type=_interval,
        default=0.0,
        metavar="SECONDS",
        help="refresh every SECONDS (default: each of the daemon's polls)",
    )
    top.add_argument(
        "--user", default="", help="basic-auth user; the password is read from TCPWATCHD_PASSWORD"
    )
    top.add_argument("--ca-file", default="", metavar="FILE", help="CA bundle to verify an https daemon")


def _load(path: str | None) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as e:
        print(e.render(), file=sys.stderr)
        return None


def _web_config_ok(cfg: Config) -> bool:
    """The web config the file names is checked too (`systemctl reload` runs check-config first)."""
    if not cfg.exporter.web_config_file:
        return True
    from tcpwatchd.web.endpoint import WebSetup

    try:
        WebSetup.load(cfg.exporter.web_config_file)
    except ConfigError as e:
        print(e.render(), file=sys.stderr)
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        cfg = _load(args.file)
        if cfg is None or not _web_config_ok(cfg):
            return 1
        print(f"{args.file}: ok")
        return EXIT_OK
    cfg = _load(args.config)
    if cfg is None:
        return EXIT_USAGE
    pin_mmap_threshold()  # every command below polls: keep its memory from fragmenting (memory.py)
    if args.command == "run":
        from tcpwatchd.daemon import run_daemon

        return run_daemon(cfg, args.config)
    if args.command == "snapshot":
        from tcpwatchd.snapshot_cli import snapshot_command

        filters = {k: getattr(args, k) for k in ("process", "namespace", "pod", "kind")}
        return snapshot_command(
            cfg, as_json=args.json, interval=args.interval, local=args.local, filters=filters
        )
    if args.command == "top":
        from tcpwatchd.top.command import top_command

        return top_command(
            cfg, url=args.url, local=args.local, interval=args.interval, user=args.user, ca_file=args.ca_file
        )
    if args.command == "audit":
        from tcpwatchd.sysctl.cli import audit_command

        return audit_command(cfg, apply=args.apply, as_json=args.json)
    raise AssertionError(args.command)
