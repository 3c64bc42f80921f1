"""The probe state machine on hand-built observations, with a fake of the socket operations."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, replace

import pytest

from tcpwatchd.actions.outcome import Failure, Refusal
from tcpwatchd.actions.probe_types import Action, Candidate, ProbeSettings, Result
from tcpwatchd.actions.prober import Prober
from tcpwatchd.actions.sockops import KeepaliveOptions, SocketStatus, Target
from tcpwatchd.allowlist import parse_allowlist
from tcpwatchd.model import Family, ProcessLabels, Socket, TcpInfo, TcpState, TimerKind

ORIGINAL = KeepaliveOptions(False, 7200, 75, 9)
PID, INODE, COOKIE = 812, 5000, 77
REDIS = ProcessLabels("redis-server")


def _sock(
    cookie: int = COOKIE,
    inode: int = INODE,
    *,
    state: TcpState = TcpState.ESTABLISHED,
    probes: int = 0,
    ack_ms: int = 950_000,
    rq: int = 0,
    wq: int = 0,
    port: int = 40000,
) -> Socket:
    info = TcpInfo(0, probes, 0, 200_000, 0, 0, 0, 950_000, 950_000, ack_ms, 100, 50, 0)
    return Socket(
        Family.INET, state, "198.18.1.1", 6379, "198.18.1.2", port, rq, wq, 0, inode,
        TimerKind.KEEPALIVE if probes else TimerKind.OFF, 0, 0, cookie, info,
    )  # fmt: skip


def _cand(sock: Socket, pid: int = PID, process: str = "redis-server", superseded: bool = True) -> Candidate:
    return Candidate(sock, pid, process, unit="redis.service", superseded=superseded)


@dataclass
class FakeOps:
    """Sockets by (pid, inode): their options and kernel state; records every call."""

    options: dict[tuple[int, int], KeepaliveOptions] = field(default_factory=dict)
    state: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)  # (tcpi_state, probes)
    refuse: Failure | None = None
    destroy_refusal: Failure | None = None
    calls: list[str] = field(default_factory=list)

    def add(self, pid: int = PID, inode: int = INODE) -> None:
        self.options[pid, inode] = ORIGINAL
        self.state[pid, inode] = (1, 0)

    def _status(self, target: Target) -> SocketStatus | Failure:
        if self.refuse:
            return self.refuse
        key = (target.pid, target.inode)
        if key not in self.options:
            return Failure(Refusal.FD_CLOSED, f"pid {target.pid} holds no socket:[{target.inode}]")
        tcpi_state, probes = self.state[key]
        return SocketStatus(3, tcpi_state, probes, 0, 0, self.options[key])

    def read_status(self, target: Target) -> SocketStatus | Failure:
        self.calls.append("read")
        return self._status(target)

    def set_keepalive(self, target: Target, wanted: KeepaliveOptions) -> SocketStatus | Failure:
        self.calls.append(f"set {wanted.idle}")
        if (target.pid, target.inode) in self.options and not self.refuse:
            self.options[target.pid, target.inode] = wanted
        return self._status(target)

    def destroy(self, target: Target, sock: Socket) -> Failure | None:
        self.calls.append("destroy")
        if self.destroy_refusal is None:
            del self.options[target.pid, target.inode]
        return self.destroy_refusal

    def holds(self, target: Target) -> bool:
        return (target.pid, target.inode) in self.options


def _prober(ops: FakeOps, **kw: object) -> Prober:
    settings = ProbeSettings(reap=False, allow=parse_allowlist(["unit:redis.service"]), budget=3, own_pid=1)
    return Prober(replace(settings, **kw), ops)  # type: ignore[arg-type]


def _armed(ops: FakeOps, **kw: object) -> Prober:
    ops.add()
    prober = _prober(ops, **kw)
    step = prober.step(100.0, [_cand(_sock())], {COOKIE: _sock()})
    assert [e.action for e in step.events] == [Action.ARMED]
    assert step.events[0].before == ORIGINAL and ops.options[PID, INODE] == prober.settings.armed
    return prober


def test_an_ack_after_arming_is_alive_and_the_options_are_restored() -> None:
    ops = FakeOps()
    prober = _armed(ops)
    assert prober.step(101.0, [], {COOKIE: _sock(probes=1)}).events == ()  # a probe out, no answer yet
    step = prober.step(102.5, [], {COOKIE: _sock(ack_ms=400)})
    (event,) = step.events
    assert event.result is Result.ALIVE and event.after == ORIGINAL and "ACK 400 ms ago" in event.answered
    assert ops.options[PID, INODE] == ORIGINAL
    assert step.summary.probes_total == {(REDIS, Result.ALIVE): 1} and step.summary.in_flight == 0


def test_an_ack_older_than_the_probe_is_not_an_answer() -> None:
    ops = FakeOps()
    prober = _armed(ops)
    assert prober.step(101.0, [], {COOKIE: _sock(ack_ms=1500)}).events == ()


@pytest.mark.parametrize(
    ("reap", "superseded", "destroyed"), [(False, True, False), (True, False, False), (True, True, True)]
)
def test_budget_unanswered_is_unreachable_restored_or_reaped(
    reap: bool, superseded: bool, destroyed: bool
) -> None:
    ops = FakeOps()
    ops.add()
    prober = _prober(ops, reap=reap)
    prober.step(100.0, [_cand(_sock(), superseded=superseded)], {COOKIE: _sock()})
    step = prober.step(104.0, [], {COOKIE: _sock(probes=3)})
    assert step.events[0].result is Result.UNREACHABLE and "3 probes unanswered" in step.events[0].answered
    assert ("destroy" in ops.calls) is destroyed
    assert [e.action for e in step.events[1:]] == ([Action.DESTROYED] if destroyed else [])
    if destroyed:
        assert step.summary.reaped_total == {REDIS: 1} and (PID, INODE) not in ops.options
    else:
        assert ops.options[PID, INODE] == ORIGINAL and step.events[0].after == ORIGINAL
        assert step.summary.proven == {REDIS: 1}
        assert prober.step(105.0, [], {}).summary.proven == {}  # gone: forgotten


def test_a_failed_destroy_restores_and_says_why() -> None:
    ops = FakeOps(destroy_refusal=Failure(Refusal.UNSUPPORTED, "SOCK_DESTROY: not supported"))
    ops.add()
    prober = _prober(ops, reap=True)
    prober.step(100.0, [_cand(_sock())], {COOKIE: _sock()})
    (event,) = prober.step(104.0, [], {COOKIE: _sock(probes=3)}).events
    assert event.result is Result.UNREACHABLE and "not destroyed" in event.reason
    assert ops.options[PID, INODE] == ORIGINAL


def test_closed_by_the_kernel_while_still_held_is_dead_and_counted_while_held() -> None:
    ops = FakeOps()
    prober = _armed(ops)
    ops.state[PID, INODE] = (7, 1)  # TCP_CLOSE after one probe: reset
    step = prober.step(102.0, [], {})
    (event,) = step.events
    assert event.result is Result.DEAD and "RST" in event.answered and event.after is None
    assert ops.options[PID, INODE] == prober.settings.armed  # a closed socket is not touched again
    assert step.summary.proven == {REDIS: 1}
    del ops.options[PID, INODE]  # the application finally closed it
    assert prober.step(103.0, [], {}).summary.proven == {}
    assert prober.watching() == frozenset()


@pytest.mark.parametrize(
    ("tcpi", "reason"),
    [((7, 127), "kernel timeout"), ((1, 0), "left the tables in state 1")],
)
def test_vanished_for_other_reasons_is_a_failure(tcpi: tuple[int, int], reason: str) -> None:
    ops = FakeOps()
    prober = _armed(ops)
    ops.state[PID, INODE] = tcpi
    (event,) = prober.step(102.0, [], {}).events
    assert event.result is Result.FAILED and reason in event.reason


def test_the_application_closing_or_exiting_mid_probe_is_a_failure_with_a_reason() -> None:
    ops = FakeOps()
    prober = _armed(ops)
    del ops.options[PID, INODE]
    (event,) = prober.step(102.0, [], {COOKIE: _sock(inode=0, state=TcpState.FIN_WAIT1)}).events
    assert event.result is Result.FAILED and "closed the socket" in event.reason
    ops2 = FakeOps()
    prober2 = _armed(ops2)
    ops2.refuse = Failure(Refusal.PROCESS_EXITED, "pidfd_open: No such process (the process exited)")
    (event2,) = prober2.step(102.0, [], {}).events
    assert event2.result is Result.FAILED and "exited" in event2.reason


def test_no_verdict_in_time_fails_and_restores() -> None:
    ops = FakeOps()
    prober = _armed(ops)
    (event,) = prober.step(100.0 + prober.settings.max_seconds + 1, [], {COOKIE: _sock(probes=1)}).events
    assert (
        event.result is Result.FAILED and "no verdict" in event.reason and ops.options[PID, INODE] == ORIGINAL
    )


def test_a_refused_arm_is_failed_once_not_retried_every_poll() -> None:
    ops = FakeOps(
        refuse=Failure(Refusal.NO_PERMISSION, "pidfd_getfd: Operation not permitted (needs CAP_SYS_PTRACE)")
    )
    ops.add()
    prober = _prober(ops, reprobe_after_seconds=900)
    (event,) = prober.step(100.0, [_cand(_sock())], {COOKIE: _sock()}).events
    assert event.result is Result.FAILED and "CAP_SYS_PTRACE" in event.reason
    step = prober.step(101.0, [_cand(_sock())], {COOKIE: _sock()})
    assert step.events == () and step.summary.skipped == {"settled": 1}
    assert len(prober.step(1001.0, [_cand(_sock())], {COOKIE: _sock()}).events) == 1  # idle anew: again


def test_proven_alive_is_not_probed_again_until_idle_anew() -> None:
    ops = FakeOps()
    prober = _armed(ops, reprobe_after_seconds=900)
    prober.step(102.0, [], {COOKIE: _sock(ack_ms=100)})
    assert prober.step(103.0, [_cand(_sock())], {COOKIE: _sock()}).summary.skipped == {"settled": 1}
    events = prober.step(1003.0, [_cand(_sock())], {COOKIE: _sock()}).events
    assert [e.action for e in events] == [Action.ARMED]


@pytest.mark.parametrize(
    ("cand", "why"),
    [
        (_cand(_sock(), pid=1), "own_socket"),
        (_cand(_sock(state=TcpState.LISTEN)), "not_established"),
        (_cand(_sock(rq=10)), "data_queued"),
        (_cand(_sock(wq=1)), "data_queued"),
        (_cand(replace(_sock(), cookie=None)), "no_cookie"),
        (_cand(replace(_sock(), tcp_info=None)), "no_tcp_info"),
        (Candidate(_sock(), PID, "redis-server", unit="other.service"), "not_allowed"),
    ],
)
def test_guard_rails_skip_without_touching_the_socket(cand: Candidate, why: str) -> None:
    ops = FakeOps()
    ops.add()
    step = _prober(ops).step(100.0, [cand], {COOKIE: cand.socket})
    assert step.events == () and step.summary.skipped == {why: 1} and ops.calls == []


def test_rate_limits_per_poll_per_process_and_in_flight() -> None:
    ops = FakeOps()
    cands = []
    for i in range(6):
        pid = PID + i % 3  # three processes, two sockets each
        ops.add(pid, INODE + i)
        cands.append(_cand(_sock(COOKIE + i, INODE + i, port=40000 + i), pid=pid))
    obs = {c.socket.cookie or 0: c.socket for c in cands}
    prober = _prober(ops, max_per_poll=4, max_per_process=1, max_in_flight=5)
    step = prober.step(100.0, cands, obs)
    assert step.summary.in_flight == 3 and step.summary.skipped == {"rate_limited": 3}
    step = prober.step(100.5, cands, obs)
    assert step.summary.in_flight == 3 and step.summary.skipped == {"in_flight": 3, "rate_limited": 3}


def test_dry_run_logs_once_and_touches_nothing() -> None:
    ops = FakeOps()
    ops.add()
    prober = _prober(ops, dry_run=True)
    (event,) = prober.step(100.0, [_cand(_sock())], {COOKIE: _sock()}).events
    assert event.action is Action.WOULD_ARM and event.after == prober.settings.armed
    assert prober.step(101.0, [_cand(_sock())], {COOKIE: _sock()}).events == ()
    assert ops.calls == []


def test_phantoms_go_first_and_restore_all_puts_options_back() -> None:
    ops = FakeOps()
    ops.add(PID, INODE)
    ops.add(PID + 1, INODE + 1)
    suspect = _cand(_sock(), superseded=False)
    phantom = _cand(_sock(COOKIE + 1, INODE + 1), pid=PID + 1)
    prober = _prober(ops, max_per_poll=1)
    (armed,) = prober.step(100.0, [suspect, phantom], {}).events
    assert armed.superseded and ops.options[PID + 1, INODE + 1] == prober.settings.armed
    (event,) = prober.restore_all()
    assert (
        event.result is Result.FAILED
        and event.after == ORIGINAL
        and ops.options[PID + 1, INODE + 1] == ORIGINAL
    )


def test_the_message_carries_the_evidence() -> None:
    ops = FakeOps()
    prober = _armed(ops)
    (event,) = prober.step(102.0, [], {COOKIE: _sock(ack_ms=100)}).events
    assert event.message().startswith(
        "probe alive: redis-server[812] 198.18.1.1:6379 -> 198.18.1.2:40000 idle 950s: ACK"
    )


def test_socket_family_constant_matches_model() -> None:
    assert int(Family.INET) == socket.AF_INET
