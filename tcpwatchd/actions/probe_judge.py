"""Judging a probe in flight from one poll's view of its socket, and the prober's event records.

The verdicts (docs/probing.md has the evidence table):
- **alive**: an ACK arrived after arming (`tcpi_last_ack_recv` younger than the probe) and
  `tcpi_probes` is back to 0 (tcp_ack() clears icsk_probes_out).
- **unreachable**: `budget` probes unanswered (`tcpi_probes >= budget`, no ACK since arming).
- **dead**: the socket left the kernel's tables while the owner still holds its fd, and TCP_INFO on
  that fd says CLOSE with fewer probes than the armed TCP_KEEPCNT, no retransmission and no
  TCP_USER_TIMEOUT expired. The owner did not close it (its fd still refers to the socket), the kernel
  did not time it out (those are the only timeouts that abort an idle connection, tcp_timer.c): what
  closed it is a reset, answered to the probe by a peer that had forgotten the connection (RFC 9293
  3.10.7.3 / tcp_reset()). An abort by someone else's SOCK_DESTROY (`ss -K`) in the same window looks the
  same and would count as dead. sk_err is never read: reading it would consume the ECONNRESET the
  application is due to see (sock_error() clears it).
- **failed**: the owner closed the socket or exited, a refusal, or no verdict within
  `ProbeSettings.max_seconds`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tcpwatchd.actions.outcome import Failure, Refusal
from tcpwatchd.actions.probe_types import (
    Action,
    Candidate,
    ProbeEvent,
    ProbeOps,
    ProbeSettings,
    Result,
)
from tcpwatchd.actions.sockops import MAX_TCP_KEEPCNT, KeepaliveOptions, Target
from tcpwatchd.model import ProcessLabels, Socket, TcpState

Verdict = tuple[Result, str, str]  # (result, what answered, why it failed)

TCP_CLOSE = 7
_ACK_SLACK_S = 0.01  # tcpi_last_ack_recv counts jiffies (up to 10 ms at HZ=100)


@dataclass(frozen=True, slots=True)
class Probe:
    cand: Candidate
    target: Target
    armed_at: float
    before: KeepaliveOptions
    idle: float


@dataclass(frozen=True, slots=True)
class Settled:
    result: Result
    at: float
    labels: ProcessLabels
    target: Target


def idle_of(sock: Socket) -> float:
    info = sock.tcp_info
    return min(info.last_data_recv_ms, info.last_ack_recv_ms) / 1000.0 if info else 0.0


def judge(
    settings: ProbeSettings, ops: ProbeOps, now: float, probe: Probe, obs: Socket | None
) -> Verdict | None:
    """(result, what answered, failure reason), or None while waiting."""
    if obs is None or obs.inode != probe.target.inode:  # gone from the tables, or orphaned by close()
        return vanished(ops, now, probe)
    info = obs.tcp_info
    elapsed = now - probe.armed_at
    acked = info is not None and info.last_ack_recv_ms / 1000.0 < elapsed - _ACK_SLACK_S
    if acked and info is not None and info.probes == 0:
        return Result.ALIVE, f"ACK {info.last_ack_recv_ms} ms ago, {elapsed:.1f} s after arming", ""
    if obs.state != TcpState.ESTABLISHED:
        return Result.FAILED, "", f"the connection went to {obs.state.name} during the probe"
    if info is not None and not acked and info.probes >= settings.budget:
        return Result.UNREACHABLE, f"nothing: {info.probes} probes unanswered in {elapsed:.1f} s", ""
    if elapsed > settings.max_seconds:
        return Result.FAILED, "", f"no verdict within {settings.max_seconds:.0f} s"
    return None


def vanished(ops: ProbeOps, now: float, probe: Probe) -> Verdict:
    status = ops.read_status(probe.target)
    if isinstance(status, Failure):
        if status.refusal is Refusal.FD_CLOSED:
            return Result.FAILED, "", "the application closed the socket during the probe"
        return Result.FAILED, "", status.reason
    if status.state != TCP_CLOSE:
        return Result.FAILED, "", f"the socket left the tables in state {status.state}"
    elapsed_ms = (now - probe.armed_at) * 1000.0
    timed_out = (
        status.probes >= MAX_TCP_KEEPCNT or status.retransmits > 0 or 0 < status.user_timeout_ms <= elapsed_ms
    )
    if timed_out:
        return (
            Result.FAILED,
            "",
            f"closed by a kernel timeout (probes {status.probes}, retransmits {status.retransmits})",
        )
    return (
        Result.DEAD,
        f"RST: the kernel closed the socket after {status.probes} probe(s); the owner still holds it",
        "",
    )


def probe_event(
    action: Action,
    cand: Candidate,
    idle: float,
    *,
    result: Result | None = None,
    answered: str = "",
    reason: str = "",
    before: KeepaliveOptions | None = None,
    after: KeepaliveOptions | None = None,
) -> ProbeEvent:
    sock = cand.socket
    return ProbeEvent(
        action=action,
        result=result,
        process=cand.process,
        pid=cand.pid,
        local=sock.local,
        peer=sock.remote,
        cookie=sock.cookie or 0,
        superseded=cand.superseded,
        idle_seconds=idle,
        answered=answered,
        reason=reason,
        before=before,
        after=after,
        unit=cand.unit,
        pod=cand.pod,
        netns=cand.netns,
    )
