#!/usr/bin/env python3
"""tcpwatchd poll cost against ss, psutil and node_exporter, on N loopback connections across P processes.

    sudo python3 benchmarks/bench_poll.py [--sizes 1000,10000,50000] [--procs 20,200] [--rounds N]

Each point of the matrix gets a fresh private network namespace (loopback only, deleted at the end), a
population built by population.py, and interleaved rounds; each round runs every method once, in a rotating
order, each in its own process inside the namespace (poll_worker.py). Medians are printed side by side with
the ratios against the targets from issue 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from typing import IO, Any

from netns_row import run_row
from nsutil import Namespace
from population import Spec, build
from tables import Part, Point, render, render_breakdown, render_resources

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
EXPORTER_PORT = 9100
METHODS = ("tcpwatchd", "ss", "psutil", "scrape")
SERIES = ("cold", "steady", "ss", "psutil", "scrape", "rss", "seen", "findings", "gc", "idle_rss", "cpu")
WORST_IDLE_SECONDS = 4.0  # [detect.phantom] idle_seconds of the worst-case rows (issue 12)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _worker(ns: Namespace, method: str, timeout: float, idle: float = 0.0) -> dict[str, Any]:
    argv = [method, str(EXPORTER_PORT)] if method == "scrape" else [method]
    if method == "tcpwatchd" and idle > 0:
        argv += ["--idle-seconds", str(idle)]
    out = ns.python("poll_worker.py", *argv, timeout=timeout)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


class Rounds:
    """The samples of one matrix point: every method once per round, in a rotating order."""

    def __init__(self) -> None:
        self.series: dict[str, list[float]] = {name: [] for name in SERIES}
        self.parts: dict[str, list[float]] = {}

    def run(self, ns: Namespace, rounds: int, methods: tuple[str, ...], timeout: float, idle: float) -> None:
        for r in range(rounds):
            for method in methods[r % len(methods) :] + methods[: r % len(methods)]:
                self._add(method, _worker(ns, method, timeout, idle))
            latest = ", ".join(f"{k} {v[-1]:.3f}" for k, v in self.series.items() if v)
            _say(f"  round {r + 1}/{rounds}: {latest}")

    def _add(self, method: str, res: dict[str, Any]) -> None:
        if method != "tcpwatchd":
            self.series[method].append(res["seconds"])
            return
        for name, value in (
            ("cold", res["cold"]),
            ("steady", _median(res["steady"])),
            ("rss", res["rss_kb"] / 1024),
            ("seen", res["sockets"]),
            ("findings", res["findings"]),
            ("gc", res["gc_steady"]),
            ("idle_rss", res["idle_rss_kb"] / 1024),
            ("cpu", res["cpu_steady"]),
        ):
            self.series[name].append(value)
        for name, seconds in res["steady_parts"].items():
            self.parts.setdefault(name, []).append(seconds)

    def point(self, spec: Spec, rounds: int, build_seconds: float, sockets: int, worst: bool) -> Point:
        m = {name: _median(values) for name, values in self.series.items()}
        return Point(
            spec=spec,
            worst=worst,
            rounds=rounds,
            build_seconds=build_seconds,
            sockets=sockets,
            seen=int(m["seen"]) if self.series["seen"] else 0,
            cold=m["cold"],
            steady=m["steady"],
            ss=m["ss"],
            psutil=m["psutil"],
            scrape=m["scrape"],
            rss_mb=max(self.series["rss"], default=float("nan")),
            findings=int(m["findings"]) if self.series["findings"] else 0,
            gc_steady=m["gc"],
            idle_rss_mb=m["idle_rss"],
            cpu_steady=m["cpu"],
            parts=tuple(Part(name, _median(values)) for name, values in sorted(self.parts.items())),
        )


def run_point(
    spec: Spec, rounds: int, methods: tuple[str, ...], log: IO[str], profile: str | None, worst: bool = False
) -> Point:
    label = " (worst case)" if worst else ""
    sockets = spec.expected_sockets
    _say(f"== {spec.connections} connections, {spec.processes} processes ({sockets} sockets){label}")
    idle = WORST_IDLE_SECONDS if worst else 0.0
    lifetime = 1800.0  # children exit by themselves after this, whatever happens to the driver
    samples = Rounds()
    with Namespace(log) as ns:
        # Before the population: a listener's port is never handed out as an ephemeral port.
        exporter_argv = ["--collector.disable-defaults", "--collector.tcpstat"]
        ns.spawn(NODE_EXPORTER, *exporter_argv, f"--web.listen-address=127.0.0.1:{EXPORTER_PORT}")
        pop = build(ns, spec, lifetime, others=1)
        _say(f"  built in {pop.build_seconds:.1f} s; ss -tanH counts {pop.sockets_seen} sockets")
        ns.python("poll_worker.py", "scrape", str(EXPORTER_PORT), "--warmup", "30", timeout=120)
        if worst:  # nothing is sent after the handshakes: wait until every connection is idle past it
            time.sleep(max(0.0, idle + 1.0 - pop.build_seconds))
        samples.run(ns, rounds, methods, timeout=900, idle=idle)
        if profile:
            prefix = os.path.join(profile, f"profile-{spec.connections}-{spec.processes}")
            ns.python(
                "poll_worker.py", "tcpwatchd", "--profile", prefix, "--idle-seconds", str(idle), timeout=900
            )
            _say(f"  cProfile of one cold and one steady poll: {prefix}-cold.txt, {prefix}-steady.txt")
    return samples.point(spec, rounds, pop.build_seconds, pop.sockets_seen, worst)


def _machine() -> str:
    cpus = os.cpu_count()
    return f"kernel {os.uname().release}, {cpus} CPUs, Python {sys.version.split()[0]}"


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    if unknown := set(names) - set(METHODS):
        raise argparse.ArgumentTypeError(f"unknown methods {sorted(unknown)}")
    return names


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--sizes", type=_ints, default=[1000, 10000, 50000], help="connections per point")
    parser.add_argument("--procs", type=_ints, default=[20, 200], help="processes per point (half servers)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per point (default 5; 3 at ≥50k)")
    parser.add_argument("--methods", type=_names, default=METHODS, help="subset of " + ",".join(METHODS))
    parser.add_argument("--profile", metavar="DIR", default=None, help="also write cProfile text per point")
    parser.add_argument(
        "--worst",
        action="store_true",
        help=f"worst-case rows: [detect.phantom] idle_seconds = {WORST_IDLE_SECONDS:g}, all idle past it",
    )
    parser.add_argument(
        "--netns",
        type=int,
        default=0,
        metavar="N",
        help="run only the containers row: N namespaces beside --sizes[0] connections (netns_row.py)",
    )
    return parser.parse_args(argv)


def _preflight() -> str | None:
    if os.geteuid() != 0:
        return "bench_poll.py must run as root (it creates a network namespace); try: sudo python3 ..."
    for tool in ("ip", "ss", "sysctl", NODE_EXPORTER):
        if shutil.which(tool) is None:
            return f"{tool} not found (node_exporter: apt-get install prometheus-node-exporter)"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # unwind, so the namespace and children are cleaned up
    if problem := _preflight():
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    points: list[Point] = []
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("w", prefix="tcpwbench-", suffix=".log", delete=False) as log:
        _say(f"children's stderr: {log.name}")
        if args.netns:
            row = run_row(args.netns, args.sizes[0], args.rounds or 3, log)
            print(f"{_machine()}; medians of interleaved rounds\n\n{row}")
            return 0
        for procs in args.procs:
            for size in args.sizes:
                rounds = args.rounds or (3 if size >= 50000 else 5)
                points.append(
                    run_point(Spec(size, procs), rounds, args.methods, log, args.profile, args.worst)
                )
    _say(f"total {time.monotonic() - started:.0f} s")
    print(f"{_machine()}; medians of interleaved rounds\n")
    print(render(points))
    print("\nWhere a steady poll goes (medians; tcpwatchd's own source and detector timings):\n")
    print(render_breakdown(points))
    print("\nMemory beyond the idle process, and CPU at the default 10 s interval (steady polls):\n")
    print(render_resources(points))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the namespaces and children are already gone (finally blocks)
        print("interrupted", file=sys.stderr)
        sys.exit(130)
