from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from tcpwatchd.detectors.phantom import IDLE_SUSPECT, PHANTOM
from tcpwatchd.model import Socket, TimerKind
from tcpwatchd.report import Report
from tests.support.builders import owner
from tests.support.detect_snapshots import Scenario, conn, detect_config, info, listener

CFG = detect_config(phantom={"idle_seconds": 60})
SRV = owner("server", 10)
PEER = "198.18.0.2"


@dataclass(frozen=True)
class Step:
    at: float
    sockets: Sequence[Socket]


def _run(steps: Sequence[Step], source: str = "sockdiag") -> Report:
    sc = Scenario(source=source)
    report = None
    for step in steps:
        socks = [listener(), *step.sockets]
        report = sc.report(step.at, socks, dict.fromkeys(socks, SRV), CFG)
    assert report is not None
    return report


def _kinds(report: Report) -> dict[str, str]:
    """remote endpoint -> kind, for the phantom detector's findings."""
    return {f.remote: f.kind for f in report.findings if f.kind in (PHANTOM, IDLE_SUSPECT)}


def old(idle_s: float, timer: TimerKind = TimerKind.OFF, port: int = 40001, peer: str = PEER) -> Socket:
    return conn(peer, port, tcp_info=info(int(idle_s * 1000)), timer=timer)


def new(idle_s: float = 0.0, port: int = 40002, peer: str = PEER, local_port: int = 8080) -> Socket:
    return conn(peer, port, local_port=local_port, tcp_info=info(int(idle_s * 1000)))


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(
            [Step(0, [old(0)]), Step(10, [old(10), new()]), Step(100, [old(100), new(1)])],
            {f"{PEER}:40001": "phantom"},
            id="reconnected-after-the-old-one-went-silent",
        ),
        pytest.param(
            [Step(0, []), Step(10, [old(0)]), Step(20, [old(10), new()]), Step(100, [old(90), new(1)])],
            {f"{PEER}:40001": "phantom"},
            id="both-seen-after-start",
        ),
        pytest.param(
            [Step(0, [old(0), new()]), Step(100, [old(100), new(100)])],
            {f"{PEER}:40001": "idle_suspect", f"{PEER}:40002": "idle_suspect"},
            id="both-open-at-start-are-not-ordered",
        ),
        pytest.param(
            [Step(0, []), Step(10, [old(0), new()]), Step(100, [old(90), new(90)])],
            {f"{PEER}:40001": "idle_suspect", f"{PEER}:40002": "idle_suspect"},
            id="first-seen-in-the-same-poll-a-pool",
        ),
        pytest.param(
            [Step(0, [old(0)]), Step(10, [old(0), new()]), Step(100, [old(70), new()])],
            {f"{PEER}:40001": "idle_suspect"},
            id="newer-connection-appeared-before-the-last-packet",
        ),
        pytest.param(
            [
                Step(0, [old(0)]),
                Step(10, [old(10), new(local_port=9090)]),
                Step(100, [old(100), new(local_port=9090)]),
            ],
            {f"{PEER}:40001": "idle_suspect"},
            id="newer-connection-to-another-port-does-not-supersede",
        ),
        pytest.param(
            [Step(0, [old(0)]), Step(10, [old(10), new(peer="198.18.0.3")]), Step(100, [old(100)])],
            {f"{PEER}:40001": "idle_suspect"},
            id="newer-connection-from-another-peer-does-not-supersede",
        ),
        pytest.param(
            [Step(0, [old(0)]), Step(10, [old(10), new()]), Step(100, [old(100)])],
            {f"{PEER}:40001": "phantom"},
            id="the-newer-connection-may-have-closed-since",
        ),
        pytest.param(
            [Step(0, [old(0, TimerKind.KEEPALIVE)]), Step(100, [old(100, TimerKind.KEEPALIVE)])],
            {},
            id="idle-with-keepalive-is-not-a-suspect",
        ),
        pytest.param(
            [Step(0, [old(0, TimerKind.RETRANSMIT)]), Step(100, [old(100, TimerKind.RETRANSMIT)])],
            {},
            id="idle-retransmitting-is-another-detectors-business",
        ),
        pytest.param(
            [
                Step(0, [old(0, TimerKind.KEEPALIVE)]),
                Step(10, [old(10, TimerKind.KEEPALIVE), new()]),
                Step(100, [old(100, TimerKind.KEEPALIVE), new()]),
            ],
            {f"{PEER}:40001": "phantom"},
            id="superseded-with-keepalive-is-still-a-phantom-until-keepalive-ends-it",
        ),
        pytest.param(
            [Step(0, [old(0)]), Step(10, [old(10), new()]), Step(69, [old(59.9), new()])],
            {},
            id="superseded-but-idle-just-under-the-threshold",
        ),
    ],
)
def test_phantom_and_suspect_table(steps: list[Step], expected: dict[str, str]) -> None:
    assert _kinds(_run(steps)) == expected


def test_idle_means_neither_data_nor_ack_received() -> None:
    acked = conn(PEER, 40001, tcp_info=info(data_recv_ms=100_000, ack_recv_ms=1_000))
    silent = conn(PEER, 40003, tcp_info=info(data_recv_ms=100_000, ack_recv_ms=100_000))
    report = _run([Step(0, [acked, silent]), Step(100, [acked, silent])])
    assert _kinds(report) == {f"{PEER}:40003": "idle_suspect"}


def test_ipv4_mapped_peer_is_the_same_peer() -> None:
    mapped = "::ffff:198.18.0.2"
    o = conn(mapped, 40001, local="::", tcp_info=info(100_000))
    n = conn(mapped, 40002, local="::", tcp_info=info(0))
    o0 = conn(mapped, 40001, local="::", tcp_info=info(0))
    report = _run([Step(0, [o0]), Step(10, [o0, n]), Step(100, [o, n])])
    [finding] = report.of_kind(PHANTOM)
    assert (finding.peer, finding.remote, finding.local) == (PEER, f"[{mapped}]:40001", "[::]:8080")


def test_a_phantom_names_what_a_person_needs() -> None:
    report = _run([Step(0, [old(0)]), Step(10, [old(10), new()]), Step(100, [old(95), new(1)])])
    [finding] = report.of_kind(PHANTOM)
    assert (finding.process, finding.pid, finding.local, finding.peer) == (
        "server",
        10,
        "198.18.0.1:8080",
        PEER,
    )
    assert finding.age_seconds == pytest.approx(95.0)
    assert finding.detail("newer_connection_seen_seconds_ago") == 90.0
    assert finding.detail("keepalive") == "off"


def test_without_tcp_info_the_detector_is_degraded_and_guesses_nothing() -> None:
    blind = conn(PEER, 40001)
    report = _run(
        [Step(0, [blind]), Step(10, [blind, conn(PEER, 40002)]), Step(100, [blind])], source="procnet"
    )
    assert _kinds(report) == {}
    [run] = [r for r in report.detectors if r.name == "phantom"]
    assert run.ok and "procnet" in run.degraded and "tcp_info" in run.degraded
    assert [r.name for r in report.degraded] == ["phantom"]


def test_with_tcp_info_the_detector_is_not_degraded() -> None:
    report = _run([Step(0, [old(0)])])
    assert report.degraded == ()


def test_our_outgoing_connections_are_never_superseded() -> None:
    """A client's ephemeral local port is shared by its connections to several ports of one peer
    (IP_BIND_ADDRESS_NO_PORT): a newer one to another port is no reconnection, and the idle one is a
    suspect by its timer, never a phantom. Only connections to a listening port can be superseded."""
    out_old = conn(PEER, 5432, local_port=41000, tcp_info=info(0))
    steps = [
        Step(0, [out_old]),
        Step(
            10,
            [conn(PEER, 5432, local_port=41000, tcp_info=info(10_000)), conn(PEER, 6379, local_port=41000)],
        ),
        Step(
            100,
            [conn(PEER, 5432, local_port=41000, tcp_info=info(100_000)), conn(PEER, 6379, local_port=41000)],
        ),
    ]
    assert _kinds(_run(steps)) == {f"{PEER}:5432": "idle_suspect"}
