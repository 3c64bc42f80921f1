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
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Any

from nsutil import Namespace
from population import Spec, build

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
EXPORTER_PORT = 9100
METHODS = ("tcpwatchd", "ss", "psutil", "scrape")
# Targets (issue 2): cold <= 0.2 x ss -tanpoi and <= 0.4 x psutil; steady <= node_exporter tcpstat scrape.
COLD_VS_SS, COLD_VS_PSUTIL, STEADY_VS_SCRAPE = 0.2, 0.4, 1.0


@dataclass(frozen=True, slots=True)
class Point:
    spec: Spec
    rounds: int
    build_seconds: float
    sockets: int  # what `ss -tanH` counted before measuring
    seen: int  # what tcpwatchd's cold poll returned
    cold: float
    steady: float
    ss: float
    psutil: float
    scrape: float
    rss_mb: float

    @property
    def rss_target_mb(self) -> float:
        return 50.0 if self.spec.connections <= 1000 else 150.0


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _worker(ns: Namespace, method: str, timeout: float) -> dict[str, Any]:
    argv = [method, str(EXPORTER_PORT)] if method == "scrape" else [method]
    out = ns.python("poll_worker.py", *argv, timeout=timeout)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _rounds(ns: Namespace, rounds: int, methods: tuple[str, ...], timeout: float) -> dict[str, list[float]]:
    """Every method once per round, in a rotating order; `seen` is the socket count tcpwatchd returned."""
    got: dict[str, list[float]] = {k: [] for k in ("cold", "steady", "ss", "psutil", "scrape", "rss", "seen")}
    for r in range(rounds):
        order = methods[r % len(methods) :] + methods[: r % len(methods)]
        for method in order:
            res = _worker(ns, method, timeout)
            if method == "tcpwatchd":
                got["cold"].append(res["cold"])
                got["steady"].append(_median(res["steady"]))
                got["rss"].append(res["rss_kb"] / 1024)
                got["seen"].append(res["sockets"])
            else:
                got[method].append(res["seconds"])
        _say(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in got.items() if v))
    return got


def run_point(spec: Spec, rounds: int, methods: tuple[str, ...], log: IO[str], profile: str | None) -> Point:
    _say(f"== {spec.connections} connections, {spec.processes} processes ({spec.expected_sockets} sockets)")
    lifetime = 1800.0  # children exit by themselves after this, whatever happens to the driver
    with Namespace(log) as ns:
        # Before the population: a listener's port is never handed out as an ephemeral port.
        exporter_argv = ["--collector.disable-defaults", "--collector.tcpstat"]
        ns.spawn(NODE_EXPORTER, *exporter_argv, f"--web.listen-address=127.0.0.1:{EXPORTER_PORT}")
        pop = build(ns, spec, lifetime)
        _say(f"  built in {pop.build_seconds:.1f} s; ss -tanH counts {pop.sockets_seen} sockets")
        ns.python("poll_worker.py", "scrape", str(EXPORTER_PORT), "--warmup", "30", timeout=120)
        got = _rounds(ns, rounds, methods, timeout=900)
        if profile:
            prefix = os.path.join(profile, f"profile-{spec.connections}-{spec.processes}")
            ns.python("poll_worker.py", "tcpwatchd", "--profile", prefix, timeout=900)
            _say(f"  cProfile of one cold and one steady poll: {prefix}-cold.txt, {prefix}-steady.txt")
    return Point(
        spec=spec,
        rounds=rounds,
        build_seconds=pop.build_seconds,
        sockets=pop.sockets_seen,
        seen=int(got["seen"][0]) if got["seen"] else 0,
        cold=_median(got["cold"]),
        steady=_median(got["steady"]),
        ss=_median(got["ss"]),
        psutil=_median(got["psutil"]),
        scrape=_median(got["scrape"]),
        rss_mb=max(got["rss"], default=float("nan")),
    )


def _mark(value: float, limit: float) -> str:
    return f"{value:.2f} {'ok' if value <= limit else 'over'}"


def render(points: list[Point]) -> str:
    head = (
        "| connections | procs | sockets | rounds | cold poll | steady poll | ss -tanpoi | psutil | "
        "node_exporter | peak RSS | cold/ss (≤0.2) | cold/psutil (≤0.4) | steady/node_exp (≤1) | RSS target |"
    )
    rows = [head, "|" + "---:|" * 14]
    for p in points:
        rows.append(
            f"| {p.spec.connections} | {p.spec.processes} | {p.sockets} | {p.rounds} | {p.cold:.3f} s "
            f"| {p.steady:.3f} s | {p.ss:.3f} s | {p.psutil:.3f} s | {p.scrape:.3f} s | {p.rss_mb:.0f} MB "
            f"| {_mark(p.cold / p.ss, COLD_VS_SS)} | {_mark(p.cold / p.psutil, COLD_VS_PSUTIL)} "
            f"| {_mark(p.steady / p.scrape, STEADY_VS_SCRAPE)} "
            f"| <{p.rss_target_mb:.0f} MB {'ok' if p.rss_mb < p.rss_target_mb else 'over'} |"
        )
    return "\n".join(rows)


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
    if problem := _preflight():
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    points: list[Point] = []
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("w", prefix="tcpwbench-", suffix=".log", delete=False) as log:
        _say(f"children's stderr: {log.name}")
        for procs in args.procs:
            for size in args.sizes:
                rounds = args.rounds or (3 if size >= 50000 else 5)
                points.append(run_point(Spec(size, procs), rounds, args.methods, log, args.profile))
    _say(f"total {time.monotonic() - started:.0f} s")
    print(render(points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
