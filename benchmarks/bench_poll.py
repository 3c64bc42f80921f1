#!/usr/bin/env python3
"""tcpwatchd poll cost against ss, psutil and node_exporter, on N loopback connections across P processes.

    sudo python3 benchmarks/bench_poll.py [--sizes 1000,10000,50000] [--procs 20,200] [--rounds N]
    sudo python3 benchmarks/bench_poll.py --sizes 20000,50000 --procs 20 --worst   # worst-case rows
    sudo python3 benchmarks/bench_poll.py --scale                   # 250k connections, 80 processes

Each point of the matrix gets a fresh private network namespace (loopback only, deleted at the end), a
population built by population.py, and interleaved rounds; each round runs every method once, in a rotating
order, each in its own process inside the namespace (poll_worker.py). Medians are printed side by side with
the ratios against the targets from issue 2.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from typing import IO, Any

from netns_row import run_row
from nsutil import Namespace
from poll_worker import WORST_IDLE_SECONDS
from population import Spec, build
from tables import Part, Point, render, render_breakdown, render_kinds, render_resources
from worst import missing_kinds

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
EXPORTER_PORT = 9100
METHODS = ("tcpwatchd", "ss", "psutil", "scrape")
SERIES = ("cold", "steady", "ss", "psutil", "scrape", "rss", "seen", "findings", "gc", "idle_rss", "cpu")
SCALE = (250_000, 80)  # issue 12's scale row: 500k sockets, within 20,000 fds per process
SCALE_METHODS = ("tcpwatchd", "ss", "scrape")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _worker(ns: Namespace, method: str, timeout: float, worst: bool = False) -> dict[str, Any]:
    argv = [method, str(EXPORTER_PORT)] if method == "scrape" else [method]
    if method == "tcpwatchd" and worst:
        argv.append("--worst")
    out = ns.python("poll_worker.py", *argv, timeout=timeout)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


class Rounds:
    """The samples of one matrix point: every method once per round, in a rotating order."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.series: dict[str, list[float]] = {name: [] for name in SERIES}
        self.parts: dict[str, list[float]] = {}
        self.kinds: dict[str, list[float]] = {}

    def run(self, ns: Namespace, rounds: int, methods: tuple[str, ...], timeout: float) -> None:
        for r in range(rounds):
            for method in methods[r % len(methods) :] + methods[: r % len(methods)]:
                self._add(method, _worker(ns, method, timeout, self.spec.worst))
            latest = ", ".join(f"{k} {v[-1]:.3f}" for k, v in self.series.items() if v)
            kinds = ", ".join(f"{k} {v[-1]:.0f}" for k, v in self.kinds.items())
            _say(f"  round {r + 1}/{rounds}: {latest}" + (f"; counted: {kinds}" if kinds else ""))

    def _add(self, method: str, res: dict[str, Any]) -> None:
        if method != "tcpwatchd":
            self.series[method].append(res["seconds"])
            return
        if self.spec.worst:
            _check_worst(self.spec, res)
        for kind, count in res["kinds"].items():
            self.kinds.setdefault(kind, []).append(count)
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

    def point(self, rounds: int, build_seconds: float, sockets: int) -> Point:
        m = {name: _median(values) for name, values in self.series.items()}
        return Point(
            spec=self.spec,
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
            kinds=tuple((kind, round(_median(values))) for kind, values in self.kinds.items()),
        )


def _check_worst(spec: Spec, res: dict[str, Any]) -> None:
    """A worst-case row whose polls miss a kind of finding measures the wrong thing: stop the run."""
    for poll, kinds in (("cold", res["kinds_cold"]), ("steady", res["kinds"])):
        if missing := missing_kinds(kinds):
            raise RuntimeError(
                f"worst case {spec.connections}/{spec.processes}: the {poll} poll counted no "
                f"{', '.join(missing)} (counted {kinds}; the population holds {spec.expected_unread} "
                f"unread and {spec.expected_retransmitting} retransmitting connections)"
            )
    expected = {"stalled_receive": spec.expected_unread, "unresponsive_peer": spec.expected_retransmitting}
    for kind, want in expected.items():
        if res["kinds"].get(kind) != want:
            _say(f"  note: {kind} counted {res['kinds'].get(kind)}, the population holds {want}")


def _timeout(spec: Spec) -> float:
    """One worker's limit: generous (ss -tanpoi and psutil slow down faster than linearly with sockets)."""
    return 900.0 + spec.expected_sockets / 250


def run_point(spec: Spec, rounds: int, methods: tuple[str, ...], log: IO[str], profile: str | None) -> Point:
    label = " (worst case)" if spec.worst else ""
    sockets = spec.expected_sockets
    _say(f"== {spec.connections} connections, {spec.processes} processes ({sockets} sockets){label}")
    _allow_fds(spec)
    lifetime = 1800.0  # children exit by themselves after this, whatever happens to the driver
    samples = Rounds(spec)
    timeout = _timeout(spec)
    with Namespace(log) as ns:
        # Before the population: a listener's port is never handed out as an ephemeral port.
        exporter_argv = ["--collector.disable-defaults", "--collector.tcpstat"]
        ns.spawn(NODE_EXPORTER, *exporter_argv, f"--web.listen-address=127.0.0.1:{EXPORTER_PORT}")
        pop = build(ns, spec, lifetime, others=1)
        _say(f"  built in {pop.build_seconds:.1f} s; ss -tanH counts {pop.sockets_seen} sockets")
        if spec.worst:
            shares = f"{spec.expected_unread} unread, {spec.expected_retransmitting} retransmitting"
            _say(f"  worst case: {shares} (ss -tonH)")
        ns.python("poll_worker.py", "scrape", str(EXPORTER_PORT), "--warmup", "30", timeout=120)
        if spec.worst:  # nothing is sent after the clients' last bytes: wait until all are idle past it
            time.sleep(max(0.0, pop.ready_at + WORST_IDLE_SECONDS + 1.0 - time.monotonic()))
        samples.run(ns, rounds, methods, timeout)
        if profile:
            name = f"profile-{spec.connections}-{spec.processes}{'-worst' if spec.worst else ''}"
            prefix = os.path.join(profile, name)
            worst = ["--worst"] if spec.worst else []
            ns.python("poll_worker.py", "tcpwatchd", "--profile", prefix, *worst, timeout=timeout)
            _say(f"  cProfile of one cold and one steady poll: {prefix}-cold.txt, {prefix}-steady.txt")
    return samples.point(rounds, pop.build_seconds, pop.sockets_seen)


def _allow_fds(spec: Spec) -> None:
    """Fail before building when a child would need more fds than RLIMIT_NOFILE's hard limit allows
    (20,000 on the machines this runs on; raising it needs CAP_SYS_RESOURCE): say how many processes do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if spec.fds_needed <= hard:
        return
    try:  # with CAP_SYS_RESOURCE: raise the hard limit the children inherit
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, spec.fds_needed))
    except (ValueError, OSError):
        procs = spec.processes
        while Spec(spec.connections, procs).fds_needed > hard and procs < spec.connections:
            procs += 2
        raise SystemExit(
            f"{spec.connections} connections over {spec.processes} processes need {spec.fds_needed} fds "
            f"in one process; RLIMIT_NOFILE's hard limit is {hard}: use --procs {procs} or more"
        ) from None


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
    parser.add_argument("--methods", type=_names, default=None, help="subset of " + ",".join(METHODS))
    parser.add_argument("--profile", metavar="DIR", default=None, help="also write cProfile text per point")
    parser.add_argument(
        "--worst",
        action="store_true",
        help=f"worst-case rows: [detect.phantom] idle_seconds = {WORST_IDLE_SECONDS:g}, all idle past it, "
        "5 %% with unread data, 2.5 %% retransmitting (worst.py)",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help=f"only the scale row: {SCALE[0]} connections, {SCALE[1]} processes, 3 rounds, "
        f"methods {','.join(SCALE_METHODS)} unless given",
    )
    parser.add_argument(
        "--netns",
        type=int,
        default=0,
        metavar="N",
        help="run only the containers row: N namespaces beside --sizes[0] connections (netns_row.py)",
    )
    args = parser.parse_args(argv)
    if args.scale:
        args.sizes, args.procs = [SCALE[0]], [SCALE[1]]
        args.methods = args.methods or SCALE_METHODS
    args.methods = args.methods or METHODS
    return args


def _preflight(worst: bool) -> str | None:
    if os.geteuid() != 0:
        return "bench_poll.py must run as root (it creates a network namespace); try: sudo python3 ..."
    for tool in ("ip", "ss", "sysctl", NODE_EXPORTER, *(["tc"] if worst else [])):
        if shutil.which(tool) is None:
            return f"{tool} not found (node_exporter: apt-get install prometheus-node-exporter)"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # unwind, so the namespace and children are cleaned up
    if problem := _preflight(args.worst):
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
                spec = Spec(size, procs, worst=args.worst)
                points.append(run_point(spec, rounds, args.methods, log, args.profile))
    _say(f"total {time.monotonic() - started:.0f} s")
    print(f"{_machine()}; medians of interleaved rounds\n")
    print(render(points))
    print("\nWhere a steady poll goes (medians; tcpwatchd's own source and detector timings):\n")
    print(render_breakdown(points))
    print("\nMemory beyond the idle process, and CPU at the default 10 s interval (steady polls):\n")
    print(render_resources(points))
    print("\nFindings counted in a steady poll, by kind (medians; every one, not only those listed):\n")
    print(render_kinds(points))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the namespaces and children are already gone (finally blocks)
        print("interrupted", file=sys.stderr)
        sys.exit(130)
