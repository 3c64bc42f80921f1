"""One measurement, in its own process inside the benchmark namespace; prints one JSON line.

    poll_worker.py tcpwatchd [--steady K] [--worst]            cold poll, K steady polls, peak RSS, breakdown
    poll_worker.py tcpwatchd --profile PREFIX                  cProfile text of one cold, one steady poll
    poll_worker.py psutil                                      psutil.net_connections('tcp')
    poll_worker.py ss                                          `ss -tanpoi` > /dev/null, wall time
    poll_worker.py scrape PORT [--warmup SECONDS]              one GET of node_exporter's /metrics

Imports happen before the clock starts: only the work is timed. The tcpwatchd mode imports nothing else
heavy, so its peak RSS (VmHWM) is tcpwatchd's own. `--worst` sets the detector thresholds of the
worst-case rows (WORST_DETECT) and reports the findings counted by kind.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

WORST_IDLE_SECONDS = 4.0  # [detect.phantom] idle_seconds of the worst-case rows (issue 12)
# The worst-case rows stand for a host that has been like this for a long time: every idle connection
# without keepalive is an idle suspect after 4 s (as after 15 min at the default 900), and the CLOSE_WAIT
# and unread-data thresholds are met at once (a fresh worker's tracker starts their clocks at its first
# poll, and the defaults are 300 s and 60 s), so every connection detector counts its share in every poll.
WORST_DETECT: dict[str, Any] = {
    "phantom": {"idle_seconds": WORST_IDLE_SECONDS},
    "close_wait": {"min_age_seconds": 0},
    "stalled_receive": {"min_age_seconds": 0},
}


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


class GcClock:
    """Time spent in the cyclic garbage collector, from gc.callbacks (a poll allocates ~1M objects)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start


def _breakdown(result: Any) -> dict[str, float]:
    """Where one poll's time went, as tcpwatchd itself reports it (sources and detectors)."""
    parts = {f"source:{s.name}": s.duration_seconds for s in result.snapshot.sources}
    parts.update({f"detect:{r.name}": r.duration_seconds for r in result.report.detectors})
    return parts


def _kinds(result: Any) -> dict[str, int]:
    """Every finding of one poll counted by kind (what the gauges show, not only the listed ones)."""
    counts: Counter[str] = Counter()
    for process in result.report.processes:
        for kind, n in process.counts.items():
            counts[str(kind)] += n
    return dict(sorted(counts.items()))


def _poller(worst: bool = False) -> Any:
    """A callable doing what the daemon does each interval: poll, then log the new findings.

    `worst` sets the worst-case rows' detector thresholds (WORST_DETECT)."""
    from tcpwatchd.config import Config
    from tcpwatchd.memory import pin_mmap_threshold
    from tcpwatchd.outputs.announce import Announcer
    from tcpwatchd.poller import Poller

    pin_mmap_threshold()  # as `tcpwatchd run` does at start (tcpwatchd/memory.py)

    # One namespace measured: the machine's other namespaces (other tests, the host's) stay out of it.
    raw: dict[str, Any] = {
        "daemon": {"source": "sockdiag"},
        "sysctl": {"mode": "off"},
        "namespaces": {"watch": "own"},
    }
    if worst:
        raw["detect"] = WORST_DETECT
    poller = Poller(Config.model_validate(raw))
    announcer = Announcer()

    def cycle() -> Any:
        result = poller.poll()
        announcer.announce(result.report)
        return result

    return cycle


def measure_tcpwatchd(steady: int, worst: bool = False) -> dict[str, Any]:
    poll = _poller(worst)
    rss_before = peak_rss_kb()
    gc_clock = GcClock()
    cold, result = _timed(poll)
    sockets, owned = len(result.snapshot.sockets), len(result.snapshot.owners)
    kinds_cold = _kinds(result)
    gc_cold, gc_clock.seconds = gc_clock.seconds, 0.0
    times = []
    cpu_start = _cpu()
    for _ in range(steady):
        # The previous result stays alive during the poll, as in the daemon (it is what /metrics serves),
        # slimmed as the daemon keeps it (PollResult.retained).
        result = result.retained()
        seconds, result = _timed(poll)
        times.append(seconds)
    cpu = _cpu() - cpu_start
    return {
        "cold": cold,
        "steady": times,
        "rss_kb": peak_rss_kb(),
        "idle_rss_kb": rss_before,  # after the imports and the Poller, before the first poll
        "cpu_steady": cpu / steady,  # user + system seconds of one steady poll, all threads
        "sockets": sockets,
        "owned": owned,
        "findings": len(result.report.findings),
        "kinds": _kinds(result),
        "kinds_cold": kinds_cold,
        "gc_cold": gc_cold,
        "gc_steady": gc_clock.seconds / steady,
        "steady_parts": _breakdown(result),
    }


def peak_rss_kb(status: str = "/proc/self/status") -> int:
    """This process's own peak RSS in KiB: VmHWM, the high-water mark of its address space (proc(5)).

    Not ru_maxrss: Linux carries the parent's peak into it across fork (or vfork) and exec (fs/exec.c
    exec_mmap() -> setmax_mm_hiwater_rss()), so a worker started by a driver that once held 500k lines
    of `ss` output reported the driver's peak as its own idle RSS (129 MB at 500k sockets).
    """
    try:
        with open(status, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux (getrusage(2))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def profile_tcpwatchd(prefix: str, worst: bool = False) -> dict[str, Any]:
    poll = _poller(worst)
    first = _profiled(poll, f"{prefix}-cold.txt")
    second = _profiled(poll, f"{prefix}-steady.txt")
    return {"cold": first.duration_seconds, "steady": [second.duration_seconds]}


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
    import urllib.request  # here, not at the top: it pulls in ssl, which would inflate the RSS figure

    opener = urllib.request.build_opener()
    url = f"http://127.0.0.1:{port}/metrics"

    def fetch() -> bytes:
        with opener.open(url, timeout=60) as resp:
            body: bytes = resp.read()
        return body

    deadline = time.monotonic() + warmup
    while warmup > 0:  # wait for the exporter to listen, then scrape once untimed
        try:
            fetch()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    seconds, body = _timed(fetch)
    if b"node_tcp_connection_states" not in body:
        raise SystemExit("node_exporter answered without node_tcp_connection_states: tcpstat is off?")
    return {"seconds": seconds, "bytes": len(body)}


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("mode", choices=["tcpwatchd", "psutil", "ss", "scrape"])
    parser.add_argument("port", nargs="?", type=int, default=0)
    parser.add_argument("--steady", type=int, default=3, choices=range(1, 100), metavar="K")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--warmup", type=float, default=0.0)
    parser.add_argument("--worst", action="store_true", help="the worst-case rows' detector thresholds")
    args = parser.parse_args()
    if args.mode == "tcpwatchd":
        if args.profile:
            result = profile_tcpwatchd(args.profile, args.worst)
        else:
            result = measure_tcpwatchd(args.steady, args.worst)
    elif args.mode == "psutil":
        result = measure_psutil()
    elif args.mode == "ss":
        result = measure_ss()
    else:
        result = measure_scrape(args.port, args.warmup)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
