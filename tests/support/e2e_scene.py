"""The end-to-end scene: tcpwatchd in a private namespace where every condition its dashboard shows is real.

Built with the detector tests' workloads (tests/support/detect_workload.py), each named so that findings
tell them apart:

- cw-leaky never closes what its clients closed (CLOSE_WAIT leak, and 10 unread bytes each: a stalled
  receive); cw-prompt, its look-alike, serves the same clients and closes at once.
- st-server is hit by 12 connections from one peer in a burst (reconnect storm, connections opened).
- ph-server loses a client whose link is cut before it exits, then the client's address comes back
  and reconnects (one phantom, and one quiet idle suspect; both without keepalive).
- up-sender writes to a sink across a veth link that goes down (unresponsive peer).
- rst-server is killed with data unread, so the kernel answers with RST (TcpExt TCPAbortOnClose).
- Sysctl drift needs nothing: a fresh namespace has the kernel's keepalive defaults (7200 s, 75 s, 9),
  not the policy's (600 s, 30 s, 5).

Peers are on loopback or veth hosts in 198.18.0.0/15, in namespaces the test created.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from tests.support.detect_pipeline import workload
from tests.support.e2e_prometheus import PrometheusAPI, spawn_logged
from tests.support.netns import REPO, NetNS, stop, veth, wait_line, wait_until

PORT = 9814
INSTANCE = f"127.0.0.1:{PORT}"
LEAKY, PROMPT, STORMED, PHANTOMS, SENDER = "cw-leaky", "cw-prompt", "st-server", "ph-server", "up-sender"
LEAKED = 3  # connections cw-leaky holds in CLOSE_WAIT
STORM = 12  # connections in the storm, above min_new_connections
PH_SERVER, PH_CLIENT = "198.18.1.1", "198.18.1.2"
UP_LOCAL, UP_SINK = "198.18.5.1", "198.18.5.2"

# Thresholds a few polls long, so every finding appears within seconds; the storm window outlasts the test.
PROBED = "pb-idle"  # the probed service ([detect.phantom] probe = "verify")
CONFIG = f"""
[daemon]
poll_interval_seconds = 1
[exporter]
listen_address = "127.0.0.1"
port = {PORT}
[detect.close_wait]
min_age_seconds = 2
[detect.phantom]
idle_seconds = 2
probe = "verify"
probe_allow = ["process:{PROBED}"]
probe_budget = 3
[detect.reconnect_storm]
window_seconds = 300
min_new_connections = 8
min_baseline_per_second = 0.001  # a burst of 12 in the window is far above this floor
[detect.stalled_receive]
min_age_seconds = 2
[detect.unresponsive_peer]
min_retransmits = 3
[sysctl]
mode = "audit"
[namespaces]
# The scene is one namespace: the machine's other namespaces (other tests') would be noise here.
watch = "own"
"""


def start_tcpwatchd(ns: NetNS, workdir: Path, web_config: Path | None = None) -> Path:
    """`tcpwatchd run` in `ns`, outside systemd (serving TLS and basic auth per `web_config`, an
    exporter-toolkit web config, when given); returns its log file."""
    config = workdir / "tcpwatchd.toml"
    web = f'web_config_file = "{web_config}"\n' if web_config else ""
    config.write_text(CONFIG.replace("[exporter]\n", "[exporter]\n" + web), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    log = workdir / "tcpwatchd.log"
    spawn_logged(ns, [sys.executable, "-m", "tcpwatchd", "run", "-c", str(config)], log, env)
    return log


# Writes until killed. detect_workload's `send` gives up once a write has blocked for 10 s (its socket
# timeout), and its socket then becomes an orphan no process owns: too short-lived for this module.
_SENDER = """
import socket, sys
from tests.support.detect_workload import name_self
name_self(sys.argv[3])
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
sock.settimeout(None)
print("READY", flush=True)
while True:
    sock.sendall(b"y" * 65536)
"""


def _server(ns: NetNS, host: str, port: int, mode: str, name: str) -> None:
    workload(ns, "server", "--host", host, "--port", str(port), "--mode", mode, "--name", name)


def start_servers(ns: NetNS, sink: NetNS) -> subprocess.Popen[str]:
    """Every named process, before tcpwatchd starts; returns rst-server, to be killed later.

    What happens to them afterwards is what tcpwatchd must see. Started first because tcpwatchd keeps
    the name it read when it first saw a process: one seen between exec and its renaming itself would
    be counted as "python3" (a tcpwatchd bug, reported; each workload here renames itself at start).
    """
    _server(ns, "127.0.0.1", 7001, "hold", LEAKY)
    _server(ns, "127.0.0.1", 7002, "close", PROMPT)
    _server(ns, "127.0.0.1", 7200, "reject", STORMED)
    _server(ns, "0.0.0.0", 7100, "echo", PHANTOMS)
    _server(sink, "0.0.0.0", 7500, "drain", "up-sink")
    _server(ns, "127.0.0.1", 7600, "echo", PROBED)
    wait_line(ns.python("-c", _SENDER, UP_SINK, "7500", SENDER), "READY")
    rst, _ = workload(
        ns, "server", "--host", "127.0.0.1", "--port", "7400", "--mode", "hold", "--name", "rst-server"
    )
    return rst


def probed_idle(ns: NetNS) -> None:
    """One quiet, live client of pb-idle, the only process probing may touch: proven alive, every time."""
    workload(ns, "client", "127.0.0.1", "7600", "--hello", "--name", "pb-client")


def leak_close_wait(ns: NetNS) -> None:
    """The same clients for both servers: each sends 10 bytes and closes at once."""
    clients = ("--count", str(LEAKED), "--send", "10", "--close", "--name", "cw-client")
    for port in ("7001", "7002"):
        workload(ns, "client", "127.0.0.1", port, *clients)


def storm(ns: NetNS) -> None:
    workload(ns, "client", "127.0.0.1", "7200", "--count", str(STORM), "--wait-close", "--name", "st-storm")


def _sockets(api: PrometheusAPI, process: str, state: str) -> float:
    found = api.query(f'tcpwatchd_sockets{{process="{process}",state="{state}"}}')
    return sum(s.value for s in found)


def phantom(srv: NetNS, api: PrometheusAPI, stack: contextlib.ExitStack) -> None:
    """A client on 198.18.1.2 crashes without a FIN getting out, then its address reconnects."""
    crashy = stack.enter_context(NetNS())
    _, link = veth(srv, PH_SERVER, crashy, PH_CLIENT)
    hello = ("--hello", "--name", "ph-crashy")
    workload(crashy, "client", PH_SERVER, "7100", "--bind", PH_CLIENT, "--bind-port", "40000", *hello)
    # The old connection must be seen in an earlier poll than its successor (what Prometheus has scraped,
    # tcpwatchd has seen), or the two are not ordered and neither is a phantom.
    wait_until(
        lambda: _sockets(api, PHANTOMS, "established") >= 1,
        timeout=20,
        interval=0.2,
        what="the first connection",
    )
    crashy.run("ip", "link", "del", "dev", link)  # the link goes first: no FIN gets out
    crashy.close()  # then the client is killed (by pid) and its namespace deleted
    back = stack.enter_context(NetNS())
    veth(srv, PH_SERVER, back, PH_CLIENT)
    workload(back, "client", PH_SERVER, "7100", "--bind", PH_CLIENT, "--bind-port", "40001", *hello)


def unresponsive_peer(sink: NetNS, sink_link: str) -> None:
    """up-sender writes without pause to the sink; the sink's link goes down mid-transfer."""
    sink.run("ip", "link", "set", "dev", sink_link, "down")


def rst_on_close(ns: NetNS, api: PrometheusAPI, server: subprocess.Popen[str]) -> None:
    """rst-server is killed with data unread: tcp_close() sends RST, not FIN (net/ipv4/tcp.c).

    Killed only once tcpwatchd saw it own the connection: accepted, so the kernel closes it through
    tcp_close() and counts TcpExt TCPAbortOnClose (a connection still in the accept queue would not be).
    """
    workload(ns, "client", "127.0.0.1", "7400", "--send", "1000", "--name", "rst-client")
    wait_until(
        lambda: _sockets(api, "rst-server", "established") >= 1, timeout=20, interval=0.2, what="rst-server"
    )
    stop(server)
