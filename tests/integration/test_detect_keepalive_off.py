"""Keepalive off, built for real: connections with and without SO_KEEPALIVE, and a busy one.

ka-server turns SO_KEEPALIVE on for the connections whose first byte is "K"; ka-client has it on for
all of its own. ka-busy (keepalive on) writes without pause to a peer that never reads: its socket waits
on a zero window, so the kernel reports the zero-window probe timer instead of keepalive: not judged.
Both sources carry the timer kind, so the verdict is the same from netlink and from /proc.
"""

from __future__ import annotations

import pytest

from tests.support.detect_pipeline import Poll, Watch, workload
from tests.support.netns import NetNS

INTERVAL = 0.3


@pytest.mark.integration
@pytest.mark.parametrize("source", ["sockdiag", "procnet"])
def test_connections_without_keepalive_are_counted_per_process(source: str) -> None:
    with NetNS() as ns:
        watch = Watch(ns, {}, daemon={"source": source})
        workload(
            ns, "server", "--host", "127.0.0.1", "--port", "7300", "--mode", "kaflag", "--name", "ka-server"
        )
        workload(ns, "server", "--host", "127.0.0.1", "--port", "7301", "--mode", "hold", "--name", "ka-sink")
        watch.poll()
        _, on_port = workload(
            ns, "client", "127.0.0.1", "7300", "--keepalive", "--first", "K", "--name", "ka-client"
        )
        _, off_port = workload(
            ns, "client", "127.0.0.1", "7300", "--keepalive", "--first", "N", "--name", "ka-client"
        )
        workload(ns, "send", "127.0.0.1", "7301", "--keepalive", "--name", "ka-busy")

        def settled(p: Poll) -> bool:  # the sink's window is shut and the server has read both flags
            busy = p.sockets("ka-busy")
            return bool(busy) and busy[0]["timer"] == "ZERO_WINDOW_PROBE" and len(p.sockets("ka-server")) == 3

        p = watch.poll_until(settled, timeout=15, interval=INTERVAL, what="the busy socket on a zero window")
        p = watch.poll()  # within two polls of the setup

        assert p.remotes("keepalive_off", "ka-server") == {f"127.0.0.1:{off_port}"}
        assert p.gauge("tcpwatchd_keepalive_off_connections", "ka-server") == 1
        assert p.gauge("tcpwatchd_keepalive_off_connections", "ka-client") == 0
        assert p.gauge("tcpwatchd_keepalive_off_connections", "ka-busy") == 0  # busy: not judged
        assert not any(q.findings("keepalive_off", "ka-busy") for q in watch.polls)  # nor ever before
        assert p.gauge("tcpwatchd_keepalive_off_connections", "ka-sink") == 1  # idle, no keepalive
        assert f"127.0.0.1:{on_port}" not in p.remotes("keepalive_off")
        assert p.raw["source"] == source
        assert ("phantom" in p.raw["degraded"]) == (source == "procnet")  # /proc has no idle times
        logged = [x for x in watch.logged() if x["fields"].get("TCPWATCHD_FINDING") == "keepalive_off"]
        assert {x["fields"]["TCPWATCHD_PROCESS"] for x in logged} == {"ka-server", "ka-sink"}
