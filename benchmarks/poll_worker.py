"""One measurement, in its own process inside the benchmark namespace; prints one JSON line.

    poll_worker.py tcpwatchd [--steady K] [--profile PREFIX]   cold poll, then K steady polls, and peak RSS
    poll_worker.py psutil                                      psutil.net_connections('tcp')
    poll_worker.py ss                                          `ss -tanpoi` > /dev/null, wall time
    poll_worker.py scrape PORT [--warmup SECONDS]              one GET of node_exporter's /metrics

Imports happen before the clock starts: only the work is timed. The tcpwatchd mode imports nothing else
heavy, so its `ru_maxrss` is tcpwatchd's own peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import time
from collections.abc import Callable
from typing import Any


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _profiled(fn: Callable[[], Any], path: str) -> Any:
    """Run `fn` under cProfile and write the top functions (by cumulative and own time) to `path`."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    value = prof.runcall(fn)
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(25)
    with open(path, "w", encoding="utf-8") as f:
        f.write(out.getvalue())
    return value


def measure_tcpwatchd(steady: int, profile: str | None) -> dict[str, Any]:
    from tcpwatchd.config import Config, DaemonConfig, SysctlConfig
    from tcpwatchd.poller import Poller

    cfg = Config(daemon=DaemonConfig(source="sockdiag"), sysctl=SysctlConfig(mode="off"))
    poller = Poller(cfg)
    if profile:
        first = _profiled(poller.poll, f"{profile}-cold.txt")
        steady_times = [_profiled(poller.poll, f"{profile}-steady.txt").duration_seconds]
        cold = first.duration_seconds
    else:
        cold, first = _timed(poller.poll)
        steady_times = [_timed(poller.poll)[0] for _ in range(steady)]
    snap = first.snapshot
    return {
        "cold": cold,
        "steady": steady_times,
        "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # KiB on Linux (getrusage(2))
        "sockets": len(snap.sockets),
        "owned": len(snap.owners),
        "source": snap.source,
    }


def measure_psutil() -> dict[str, Any]:
    import psutil

    seconds, conns = _timed(lambda: psutil.net_connections("tcp"))
    return {"seconds": seconds, "sockets": len(conns)}


def measure_ss() -> dict[str, Any]:
    def run() -> int:
        done = subprocess.run(["ss", "-tanpoi"], stdout=subprocess.DEVNULL, timeout=600, check=True)
        return done.returncode

    seconds, _ = _timed(run)
    return {"seconds": seconds}


def measure_scrape(port: int, warmup: float) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + warmup
    while warmup > 0:  # wait for the exporter to listen, then scrape once untimed
        try:
            _fetch(url)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    seconds, body = _timed(lambda: _fetch(url))
    if b"node_tcp_connection_states" not in body:
        raise SystemExit("node_exporter answered without node_tcp_connection_states: tcpstat is off?")
    return {"seconds": seconds, "bytes": len(body)}


def _fetch(url: str) -> bytes:
    import urllib.request  # here, not at the top: it pulls in ssl, which would inflate the RSS figure

    with urllib.request.urlopen(url, timeout=60) as resp:
        body: bytes = resp.read()
    return body


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("mode", choices=["tcpwatchd", "psutil", "ss", "scrape"])
    parser.add_argument("port", nargs="?", type=int, default=0)
    parser.add_argument("--steady", type=int, default=3)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--warmup", type=float, default=0.0)
    args = parser.parse_args()
    if args.mode == "tcpwatchd":
        result = measure_tcpwatchd(args.steady, args.profile)
    elif args.mode == "psutil":
        result = measure_psutil()
    elif args.mode == "ss":
        result = measure_ss()
    else:
        result = measure_scrape(args.port, args.warmup)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
