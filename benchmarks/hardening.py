"""Long-run measurements of the daemon (issue 15): does it stay flat under churn, a soak and an HTTP abuse?

    sudo python3 benchmarks/hardening.py sweep --rates 0,500,2500 --held 5000 --seconds 90
    sudo python3 benchmarks/hardening.py soak --seconds 1200          # 10k held, 200/s replaced, a leak
    sudo python3 benchmarks/hardening.py abuse --clients 1000 --pids 64 --seconds 60

Each run makes a private network namespace (benchmarks/nsutil.py: only `lo`), starts `tcpwatchd run`
there (1 s polls, sysctl audit off) and the load (benchmarks/loadgen.py), and samples the daemon every
`--sample` seconds: RSS, threads and fds from /proc/<pid>, CPU from its stat, the mean poll time over the
interval and the sockets counted from /metrics (benchmarks/scraper.py, inside the namespace). It prints
one row per sample and, per run, the least-squares slope of RSS and poll time after `--settle` seconds.
`abuse` adds 1,000 slow HTTP clients from nobody (tests/support/slow_clients.py) with the daemon in a pids
cgroup limited to 64 tasks (tests/support/pidlimit.py), and prints scrape latency percentiles.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from nsutil import BENCH_DIR, REPO, Namespace, read_line

PORT = 9814
PER_WORKER_SOCKETS = 15000  # under a hard RLIMIT_NOFILE of 20000 (containers cannot raise it)
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONFIG = f'[daemon]\npoll_interval_seconds = 1\n[exporter]\nport = {PORT}\n[sysctl]\nmode = "off"\n'


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # seconds since the load was up
    rss_mb: float
    threads: int
    fds: int
    cpu: float  # share of one core over the interval
    poll_ms: float  # mean poll time over the interval
    sockets: float
    series: float


class Scrapes:
    """The scraper's JSON lines, collected by a thread."""

    def __init__(self, ns: Namespace, interval: float, timeout: float) -> None:
        self.child = ns.spawn(
            sys.executable, str(BENCH_DIR / "scraper.py"), str(PORT), str(interval), str(timeout)
        )
        self.rows: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.child.stdout is not None
        for line in self.child.stdout:
            self.rows.append(json.loads(line))

    def last_ok(self) -> dict[str, Any]:
        return next((r for r in reversed(self.rows) if r.get("ok")), {})


def proc_stats(pid: int) -> tuple[float, int, int, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(stat[11]) + int(stat[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return int(status["VmRSS"].split()[0]) / 1024, int(status["Threads"]), fds, cpu_s


def start_daemon(ns: Namespace, work: Path) -> Any:
    config = work / "tcpwatchd.toml"
    config.write_text(CONFIG)
    daemon = ns.spawn(sys.executable, "-m", "tcpwatchd", "run", "-c", str(config))
    return daemon


def wait_for_line(child: Any, word: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = read_line(child, deadline)
        if line.startswith(word):
            return line
        if child.poll() is not None:
            break
    raise RuntimeError(f"no {word} line within {timeout} s")


def sample(pid: int, scrapes: Scrapes, seconds: float, every: float, out: IO[str]) -> list[Sample]:
    samples: list[Sample] = []
    start = time.monotonic()
    last_cpu, last_t = proc_stats(pid)[3], start
    last_poll = scrapes.last_ok()
    heads = ("t_s", "rss_MB", "poll_ms", "cpu_%", "thr", "fds", "sockets", "series")
    out.write(" ".join(f"{h:>8}" for h in heads) + "\n")
    while (now := time.monotonic()) - start < seconds:
        time.sleep(max(0.0, every - (now - last_t)))
        now = time.monotonic()
        rss, threads, fds, cpu = proc_stats(pid)
        row = scrapes.last_ok()
        polls = row.get("tcpwatchd_poll_duration_seconds_count", 0) - last_poll.get(
            "tcpwatchd_poll_duration_seconds_count", 0
        )
        took = row.get("tcpwatchd_poll_duration_seconds_sum", 0) - last_poll.get(
            "tcpwatchd_poll_duration_seconds_sum", 0
        )
        s = Sample(
            now - start,
            rss,
            threads,
            fds,
            (cpu - last_cpu) / (now - last_t),
            1000 * took / polls if polls else 0.0,
            row.get("sockets", 0.0),
            row.get("series", 0.0),
        )
        samples.append(s)
        cells = (f"{s.t:.0f}", f"{s.rss_mb:.1f}", f"{s.poll_ms:.1f}", f"{100 * s.cpu:.1f}", str(s.threads))
        cells += (str(s.fds), f"{s.sockets:.0f}", f"{s.series:.0f}")
        out.write(" ".join(f"{c:>8}" for c in cells) + "\n")
        out.flush()
        last_cpu, last_t, last_poll = cpu, now, row
    return samples


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope, per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return 60 * sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def summary(label: str, samples: list[Sample], settle: float) -> str:
    kept = [s for s in samples if s.t >= settle] or samples
    rss = slope([(s.t, s.rss_mb) for s in kept])
    poll = slope([(s.t, s.poll_ms) for s in kept if s.poll_ms])
    mean_poll = sum(s.poll_ms for s in kept) / len(kept)
    return (
        f"{label}: RSS {kept[0].rss_mb:.1f} -> {kept[-1].rss_mb:.1f} MB (slope {rss:+.2f} MB/min), "
        f"poll mean {mean_poll:.0f} ms (slope {poll:+.1f} ms/min), threads {min(s.threads for s in kept)}-"
        f"{max(s.threads for s in kept)}, fds {min(s.fds for s in kept)}-{max(s.fds for s in kept)}, "
        f"CPU {100 * sum(s.cpu for s in kept) / len(kept):.0f} %"
    )


def steady_run(
    label: str, held: int, rate: float, leak: float, seconds: float, a: argparse.Namespace, log: IO[str]
) -> str:
    with Namespace(log, prefix="benchhard") as ns:
        work = Path(a.workdir)
        daemon = start_daemon(ns, work)
        # One loadgen holds both ends of its connections: split so that each stays under RLIMIT_NOFILE.
        workers = max(1, -(-2 * held // PER_WORKER_SOCKETS))
        loads = [
            ns.spawn(
                sys.executable,
                str(BENCH_DIR / "loadgen.py"),
                "--held",
                str(held // workers),
                "--rate",
                str(rate / workers),
                "--leak-per-minute",
                str(leak / workers),
                "--seconds",
                str(seconds + 120),
            )
            for _ in range(workers)
        ]
        for load in loads:
            wait_for_line(load, "READY", 300)
        scrapes = Scrapes(ns, 1.0, 5.0)
        print(
            f"--- {label}: {held} held, {rate:g} new/s, {leak:g} CLOSE_WAIT/min, {seconds:.0f} s", flush=True
        )
        samples = sample(daemon.pid, scrapes, seconds, a.sample, sys.stdout)
        rates = [_last_rate(load) for load in loads]
        achieved = f" (load achieved {sum(rates):.0f} new/s at the end)" if rate else ""
        return summary(label, samples, a.settle) + achieved


def _last_rate(load: Any) -> float:
    """The last `RATE n` line a loadgen printed (it prints one every 10 s)."""
    last = 0.0
    while line := read_line(load, time.monotonic() + 0.2):
        if line.startswith("RATE"):
            last = float(line.split()[1])
    return last


def abuse_run(a: argparse.Namespace, log: IO[str]) -> str:
    sys.path.insert(0, str(REPO))
    from tests.support.pidlimit import PidsLimit, why_no_pids_cgroup

    reason = why_no_pids_cgroup()
    if reason:
        raise SystemExit(f"abuse: {reason}")
    with Namespace(log, prefix="benchhard") as ns, PidsLimit(a.pids) as limit:
        daemon = start_daemon(ns, Path(a.workdir))
        limit.add(daemon.pid)
        load = ns.spawn(
            sys.executable,
            str(BENCH_DIR / "loadgen.py"),
            "--held",
            "1000",
            "--rate",
            "50",
            "--seconds",
            str(a.seconds + 120),
        )
        wait_for_line(load, "READY", 120)
        scrapes = Scrapes(ns, 1.0, 5.0)
        time.sleep(3)
        ns.spawn(
            sys.executable,
            str(REPO / "tests/support/slow_clients.py"),
            str(PORT),
            str(a.clients),
            str(a.seconds + 30),
        )
        print(
            f"--- abuse: {a.clients} slow clients as nobody, pids.max {a.pids}, {a.seconds:.0f} s", flush=True
        )
        first = len(scrapes.rows)
        samples = sample(daemon.pid, scrapes, a.seconds, a.sample, sys.stdout)
        rows = scrapes.rows[first:]
        lat = sorted(r["latency"] for r in rows if r.get("ok"))
        failed = sum(1 for r in rows if not r.get("ok"))
        polls = [
            r["tcpwatchd_last_poll_timestamp_seconds"]
            for r in rows
            if r.get("ok") and "tcpwatchd_last_poll_timestamp_seconds" in r
        ]
        pct = {q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 for q in (0.5, 0.9, 0.99)} if lat else {}
        alive = daemon.poll() is None
        worst = 1000 * max(lat, default=0)
        advanced = max(polls, default=0) - min(polls, default=0)
        return (
            f"abuse: {len(rows)} scrapes, {failed} failed (5 s timeout); "
            f"latency p50 {pct.get(0.5, 0):.0f} ms, "
            f"p90 {pct.get(0.9, 0):.0f} ms, p99 {pct.get(0.99, 0):.0f} ms, max {worst:.0f} ms; "
            f"threads max {max(s.threads for s in samples)}; polls advanced {advanced:.0f} s "
            f"in {a.seconds:.0f} s; pids.max refusals {limit.events_max()}; daemon alive {alive}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("sweep", "soak", "abuse"))
    p.add_argument("--seconds", type=float, help="per run (sweep: per rate); default 90, soak 1200, abuse 60")
    p.add_argument("--rates", default="0,500,2500", help="sweep: new connections per second")
    p.add_argument("--held", type=int, help="connections held; default sweep 5000, soak 10000")
    p.add_argument("--rate", type=float, default=200.0, help="soak: connections replaced per second")
    p.add_argument("--leak-per-minute", type=float, default=6.0, help="soak: new CLOSE_WAIT sockets a minute")
    p.add_argument("--clients", type=int, default=1000, help="abuse: slow HTTP clients")
    p.add_argument("--pids", type=int, default=64, help="abuse: pids.max of the daemon's cgroup")
    p.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--settle", type=float, default=20.0, help="seconds left out of the slopes")
    p.add_argument("--workdir", default="", help="for the config and the log; default a new temp dir")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    a.workdir = a.workdir or tempfile.mkdtemp(prefix="tcpwatchd-hardening-")
    if os.geteuid() != 0:
        print("hardening: run as root (network namespaces, cgroups)", file=sys.stderr)
        return 2
    log_path = Path(a.workdir) / f"hardening-{os.getpid()}.log"
    print(f"children's stderr: {log_path}", file=sys.stderr)
    with log_path.open("w") as log:
        if a.mode == "sweep":
            seconds = a.seconds or 90.0
            results = [
                steady_run(f"rate {r}/s", a.held or 5000, float(r), 0.0, seconds, a, log)
                for r in a.rates.split(",")
            ]
        elif a.mode == "soak":
            results = [
                steady_run("soak", a.held or 10000, a.rate, a.leak_per_minute, a.seconds or 1200.0, a, log)
            ]
        else:
            a.seconds = a.seconds or 60.0
            results = [abuse_run(a, log)]
    print("\n".join(["", *results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
