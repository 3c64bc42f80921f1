"""The containers row: N network namespaces (one process each, a few loopback connections) beside a "host"
namespace holding a large population, read by tcpwatchd (`[namespaces] watch = "all"`) against reading each
namespace's /proc/<pid>/net/tcp{,6} (what coroot-node-agent, KubeSkoop and cAdvisor do), side by side.

    sudo python3 benchmarks/bench_poll.py --netns 100 [--sizes 10000]    # 10000 connections = 20k sockets

Each child namespace is made by `unshare -n` around a small Python process (`netns_row.py pod PORT N`),
killed by its pid at the end, which frees its namespace. Workers run inside the host namespace, each in its
own process, in interleaved rounds: tcpwatchd watching every namespace, tcpwatchd watching its own only
(the single-namespace figure), and the /proc read of the N pods. Also reported: tcpwatchd's CPU time per
steady poll as a share of one core at a 10 s interval, and the RSS it adds per watched namespace.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from typing import IO, Any

from nsutil import Namespace, read_line, stop
from population import Spec, build

POD_CONNECTIONS = 5  # per pod: 1 listener + 5 client + 5 server sockets


def pod_main(port: int, count: int) -> None:
    """One "container": lo up was done by the driver's sh; a server and `count` connections to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", port))
    server.listen()
    keep = [server]
    for _ in range(count):
        keep.append(socket.create_connection(("127.0.0.1", port)))
        keep.append(server.accept()[0])
    print("ready", flush=True)
    sys.stdin.readline()  # EOF when the driver goes


def spawn_pods(ns: Namespace, n: int, log: IO[str]) -> list[subprocess.Popen[str]]:
    """N processes, each in a new network namespace of its own, created from inside the host namespace."""
    pods = []
    me = os.path.abspath(__file__)
    for i in range(n):
        script = f"ip link set lo up && exec {sys.executable} {me} pod {30000 + i} {POD_CONNECTIONS}"
        pods.append(ns.spawn("unshare", "-n", "sh", "-c", script))
    deadline = time.monotonic() + 120
    for pod in pods:
        if read_line(pod, deadline) != "ready":
            raise RuntimeError(f"pod {pod.pid} did not start (see the log {log.name})")
    return pods


def worker(mode: str, polls: int, pids: list[int]) -> dict[str, Any]:
    """In the host namespace: `all` / `own` poll with tcpwatchd; `procnet` reads each pod's /proc/net."""
    if mode == "procnet":
        from tcpwatchd.sources.procnet import read_net_tcp

        times = []
        for _ in range(polls):
            start = time.perf_counter()
            n = sum(len(read_net_tcp(f"/proc/{pid}").sockets) for pid in pids)
            times.append(time.perf_counter() - start)
        return {"steady": statistics.median(times), "sockets": n}
    from tcpwatchd.config import Config, DaemonConfig, NamespacesConfig, SysctlConfig
    from tcpwatchd.poller import Poller

    cfg = Config(
        daemon=DaemonConfig(source="sockdiag"),
        sysctl=SysctlConfig(mode="off"),
        namespaces=NamespacesConfig(watch=mode),  # type: ignore[arg-type]
    )
    poller = Poller(cfg)
    result = poller.poll()
    times, cpu = [], []
    for _ in range(polls):
        result = result.retained()
        c0, t0 = time.process_time(), time.perf_counter()
        result = poller.poll()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    with open("/proc/self/status") as f:
        rss_kb = int(f.read().split("VmRSS:")[1].split()[0])
    out = {
        "steady": statistics.median(times),
        "cpu": statistics.median(cpu),
        "rss_kb": rss_kb,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "sockets": len(result.snapshot.sockets),
        "namespaces": len(result.snapshot.namespaces),
        "fds": len(os.listdir("/proc/self/fd")),
    }
    poller.close()
    return out


def run_row(n: int, size: int, rounds: int, log: IO[str]) -> str:
    print(f"== {n} namespaces beside a host namespace of {size} connections", file=sys.stderr, flush=True)
    samples: dict[str, list[dict[str, Any]]] = {"all": [], "own": [], "procnet": []}
    with Namespace(log) as ns:
        build(ns, Spec(size, 20), lifetime=1800.0)
        pods = spawn_pods(ns, n, log)
        pids = ",".join(str(p.pid) for p in pods)
        try:
            for r in range(rounds):
                for mode in ("all", "own", "procnet")[r % 3 :] + ("all", "own", "procnet")[: r % 3]:
                    out = ns.python("netns_row.py", "worker", mode, "10", pids, timeout=900)
                    samples[mode].append(json.loads(out.strip().splitlines()[-1]))
                print(f"  round {r + 1}/{rounds}", file=sys.stderr, flush=True)
        finally:
            for pod in pods:
                stop(pod)
    return render(n, size, samples)


def render(n: int, size: int, samples: dict[str, list[dict[str, Any]]]) -> str:
    def med(mode: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[mode])

    everything, own, proc = med("all", "steady"), med("own", "steady"), med("procnet", "steady")
    foreign = everything - own
    rss_per_ns = (med("all", "rss_kb") - med("own", "rss_kb")) / n
    header = (
        "namespaces",
        "host sockets",
        "steady poll, all",
        f"of which the {n} namespaces",
        f"/proc/<pid>/net/tcp of the {n}",
        "ratio (namespaces)",
        "ratio (whole poll)",
        "CPU at 10 s",
        "steady poll, own only",
        "RSS per namespace",
        "fds per namespace",
    )
    row = (
        f"{med('all', 'namespaces'):.0f}",
        f"{med('own', 'sockets'):.0f}",
        f"{everything * 1000:.0f} ms",
        f"{foreign * 1000:.0f} ms",
        f"{proc * 1000:.0f} ms",
        f"{foreign / proc:.2f}x",
        f"{everything / proc:.2f}x",
        f"{med('all', 'cpu') / 10 * 100:.2f} %",
        f"{own * 1000:.0f} ms",
        f"{rss_per_ns:.1f} kB",
        f"{(med('all', 'fds') - med('own', 'fds')) / n:.1f}",
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header), "| " + " | ".join(row) + " |"]
    return "\n".join(lines)


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role == "pod":
        pod_main(int(args[0]), int(args[1]))
    elif role == "worker":
        pids = [int(p) for p in args[2].split(",") if p]
        print(json.dumps(worker(args[0], int(args[1]), pids)))
    else:
        raise SystemExit(f"unknown role {role!r}")
