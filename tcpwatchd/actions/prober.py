"""The probe state machine: arm a keepalive on idle connections, read the answer on later polls.

Each poll the caller passes the candidates (phantoms and idle suspects) and the poll's sockets by
cookie; the prober arms new probes within its guard rails and judges those in flight:

- **alive**: an ACK arrived after arming (`tcpi_last_ack_recv` younger than the probe) and
  `tcpi_probes` is back to 0 (tcp_ack() clears icsk_probes_out). Options restored.
- **unreachable**: `budget` probes unanswered (`tcpi_probes >= budget`, no ACK since arming). Options
  restored; in reap mode a superseded phantom is destroyed instead (SOCK_DESTROY).
- **dead**: the socket left the kernel's tables while the owner still holds its fd, and TCP_INFO on
  that fd says CLOSE with fewer probes than the armed TCP_KEEPCNT, no retransmission and no
  TCP_USER_TIMEOUT expired. The owner did not close it (its fd still refers to the socket), the kernel
  did not time it out (those are the only timeouts that abort an idle connection, tcp_timer.c): what
  closed it is a reset, answered to the probe by a peer that had forgotten the connection (RFC 9293
  3.10.7.3 / tcp_reset()). An abort by someone else's SOCK_DESTROY (`ss -K`) in the same window looks the
  same and would count as dead. sk_err is never read: reading it would consume the ECONNRESET the
  application is due to see (sock_error() clears it).
- **failed**: a refusal (no CAP_SYS_PTRACE, ENOSYS, seccomp, ...), the owner exited or closed the
  socket, or no verdict within `ProbeSettings.max_seconds`.

Memory is bounded: `max_in_flight` probes, and `_REMEMBER` settled verdicts (oldest forgotten first),
each dropped as soon as its socket is gone.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from tcpwatchd.actions.allow import first_match
from tcpwatchd.actions.outcome import Failure, Refusal
from tcpwatchd.actions.probe_types import (
    Action,
    Candidate,
    ProbeEvent,
    ProbeOps,
    ProbeSettings,
    ProbeSummary,
    Result,
    StepResult,
)
from tcpwatchd.actions.sockops import MAX_TCP_KEEPCNT, KeepaliveOptions, Target
from tcpwatchd.model import Socket, TcpState

TCP_CLOSE = 7
_ACK_SLACK_S = 0.01  # tcpi_last_ack_recv counts jiffies (up to 10 ms at HZ=100)
_REMEMBER = 4096


@dataclass(frozen=True, slots=True)
class _Probe:
    cand: Candidate
    target: Target
    armed_at: float
    before: KeepaliveOptions
    idle: float


@dataclass(frozen=True, slots=True)
class _Settled:
    result: Result
    at: float
    process: str
    target: Target


def _idle(sock: Socket) -> float:
    info = sock.tcp_info
    return min(info.last_data_recv_ms, info.last_ack_recv_ms) / 1000.0 if info else 0.0


class Prober:
    """`Prober(settings, ops)`; then `step(now, candidates, observations)` once per poll."""

    def __init__(self, settings: ProbeSettings, ops: ProbeOps) -> None:
        self.settings = settings
        self._ops = ops
        self._flight: dict[int, _Probe] = {}
        self._settled: OrderedDict[int, _Settled] = OrderedDict()
        self._dry_seen: OrderedDict[int, None] = OrderedDict()
        self._probes: Counter[tuple[str, Result]] = Counter()
        self._reaped: Counter[str] = Counter()

    def watching(self) -> frozenset[int]:
        """Cookies whose sockets `step` will look up in `observations` next poll."""
        return frozenset(self._flight) | frozenset(self._settled)

    def step(
        self, now: float, candidates: Iterable[Candidate], observations: Mapping[int, Socket]
    ) -> StepResult:
        """One poll: judge the probes in flight, forget what is gone, arm new probes.

        `now` is the monotonic time of the poll's socket dump; `observations` maps the cookie of every
        socket in that dump (at least those in `watching()`) to the socket.
        """
        events: list[ProbeEvent] = []
        for cookie, probe in list(self._flight.items()):
            done = self._judge(now, probe, observations.get(cookie))
            if done is not None:
                del self._flight[cookie]
                events += self._finish(now, probe, observations.get(cookie), *done)
        self._forget(observations)
        skipped: Counter[str] = Counter()
        self._start(now, candidates, events, skipped)
        return StepResult(tuple(events), self.summary(skipped))

    def restore_all(self) -> list[ProbeEvent]:
        """At shutdown: put back the options of every probe in flight (each one RESOLVED as failed)."""
        events = [
            self._finish(p.armed_at, p, p.cand.socket, Result.FAILED, "", "tcpwatchd stopped")[0]
            for p in self._flight.values()
        ]
        self._flight.clear()
        return events

    def summary(self, skipped: Mapping[str, int] | None = None) -> ProbeSummary:
        proven: Counter[str] = Counter(
            s.process for s in self._settled.values() if s.result in (Result.DEAD, Result.UNREACHABLE)
        )
        return ProbeSummary.frozen(
            self._probes, self._reaped, dict(proven), len(self._flight), dict(skipped or {})
        )

    # -- judging --------------------------------------------------------------------------------------

    def _judge(self, now: float, probe: _Probe, obs: Socket | None) -> tuple[Result, str, str] | None:
        """(result, what answered, failure reason), or None while waiting."""
        if obs is None or obs.inode != probe.target.inode:  # gone from the tables, or orphaned by close()
            return self._vanished(now, probe)
        info = obs.tcp_info
        elapsed = now - probe.armed_at
        acked = info is not None and info.last_ack_recv_ms / 1000.0 < elapsed - _ACK_SLACK_S
        if acked and info is not None and info.probes == 0:
            return Result.ALIVE, f"ACK {info.last_ack_recv_ms} ms ago, {elapsed:.1f} s after arming", ""
        if obs.state != TcpState.ESTABLISHED:
            return Result.FAILED, "", f"the connection went to {obs.state.name} during the probe"
        if info is not None and not acked and info.probes >= self.settings.budget:
            return Result.UNREACHABLE, f"nothing: {info.probes} probes unanswered in {elapsed:.1f} s", ""
        if elapsed > self.settings.max_seconds:
            return Result.FAILED, "", f"no verdict within {self.settings.max_seconds:.0f} s"
        return None

    def _vanished(self, now: float, probe: _Probe) -> tuple[Result, str, str]:
        status = self._ops.read_status(probe.target)
        if isinstance(status, Failure):
            if status.refusal is Refusal.FD_CLOSED:
                return Result.FAILED, "", "the application closed the socket during the probe"
            return Result.FAILED, "", status.reason
        if status.state != TCP_CLOSE:
            return Result.FAILED, "", f"the socket left the tables in state {status.state}"
        elapsed_ms = (now - probe.armed_at) * 1000.0
        timed_out = (
            status.probes >= MAX_TCP_KEEPCNT
            or status.retransmits > 0
            or 0 < status.user_timeout_ms <= elapsed_ms
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

    def _finish(
        self, now: float, probe: _Probe, obs: Socket | None, result: Result, answered: str, reason: str
    ) -> list[ProbeEvent]:
        event = self._event(
            Action.RESOLVED,
            probe.cand,
            probe.idle,
            result=result,
            answered=answered,
            reason=reason,
            before=probe.before,
        )
        events: list[ProbeEvent] = []
        # A socket that left the tables (or lost its file) has nothing left to restore.
        gone = obs is None or obs.inode != probe.target.inode
        if result is Result.UNREACHABLE and self.settings.reap and probe.cand.superseded and obs is not None:
            destroyed = self._ops.destroy(probe.target, obs)
            if destroyed is None:
                self._reaped[probe.cand.process] += 1
                events.append(self._event(Action.DESTROYED, probe.cand, probe.idle, answered="SOCK_DESTROY"))
                gone = True
            else:
                event = replace(event, reason=f"not destroyed: {destroyed.reason}")
        if not gone:
            event = self._restore(probe, event)
        self._probes[probe.cand.process, result] += 1
        self._remember(probe.cand.socket.cookie or 0, _Settled(result, now, probe.cand.process, probe.target))
        return [event, *events]

    def _restore(self, probe: _Probe, event: ProbeEvent) -> ProbeEvent:
        back = self._ops.set_keepalive(probe.target, probe.before)
        if isinstance(back, Failure):
            reason = "; ".join(p for p in (event.reason, f"options NOT restored: {back.reason}") if p)
            return replace(event, reason=reason)
        return replace(event, after=back.keepalive)

    # -- arming ---------------------------------------------------------------------------------------

    def _start(
        self, now: float, candidates: Iterable[Candidate], events: list[ProbeEvent], skipped: Counter[str]
    ) -> None:
        per_pid = Counter(p.cand.pid for p in self._flight.values())
        started = 0
        # Phantoms first (the stronger suspicion), then the longest idle.
        for cand in sorted(candidates, key=lambda c: (not c.superseded, -_idle(c.socket))):
            why = self._refuse(now, cand, per_pid, started)
            if why:
                skipped[why] += 1
                continue
            cookie = cand.socket.cookie or 0
            if self.settings.dry_run:
                if cookie not in self._dry_seen:
                    events.append(
                        self._event(Action.WOULD_ARM, cand, _idle(cand.socket), after=self.settings.armed)
                    )
                    self._dry_seen[cookie] = None
                    while len(self._dry_seen) > _REMEMBER:
                        self._dry_seen.popitem(last=False)
                continue
            started += 1
            per_pid[cand.pid] += 1
            events += self._arm(now, cand)

    def _refuse(self, now: float, cand: Candidate, per_pid: Counter[int], started: int) -> str:
        """Why this candidate is not probed now ('' if it may be)."""
        sock, s = cand.socket, self.settings
        if sock.cookie is None:
            return "no_cookie"
        if sock.cookie in self._flight:
            return "in_flight"
        settled = self._settled.get(sock.cookie)
        if settled is not None:
            if (
                settled.result in (Result.DEAD, Result.UNREACHABLE)
                or now - settled.at < s.reprobe_after_seconds
            ):
                return "settled"
            del self._settled[sock.cookie]  # alive or failed long enough ago: idle anew, may be probed again
        if cand.pid == s.own_pid:
            return "own_socket"
        if sock.state != TcpState.ESTABLISHED:
            return "not_established"
        if sock.rqueue or sock.wqueue:
            return "data_queued"
        if sock.tcp_info is None:
            return "no_tcp_info"
        if first_match(s.allow, cand.process, cand.unit, cand.pod) is None:
            return "not_allowed"
        if (
            len(self._flight) >= s.max_in_flight
            or started >= s.max_per_poll
            or per_pid[cand.pid] >= s.max_per_process
        ):
            return "rate_limited"
        return ""

    def _arm(self, now: float, cand: Candidate) -> list[ProbeEvent]:
        idle = _idle(cand.socket)
        target = Target(cand.pid, cand.socket.inode)
        before = self._ops.read_status(target)
        if isinstance(before, Failure):
            return [self._failed_arm(now, cand, idle, target, None, before.reason)]
        if before.state != TcpState.ESTABLISHED:
            return [
                self._failed_arm(
                    now, cand, idle, target, before.keepalive, f"state {before.state} when arming"
                )
            ]
        target = replace(target, fd=before.fd)
        armed = self._ops.set_keepalive(target, self.settings.armed)
        if isinstance(armed, Failure):
            event = self._failed_arm(now, cand, idle, target, before.keepalive, armed.reason)
            return [self._restore(_Probe(cand, target, now, before.keepalive, idle), event)]
        self._flight[cand.socket.cookie or 0] = _Probe(cand, target, now, before.keepalive, idle)
        return [self._event(Action.ARMED, cand, idle, before=before.keepalive, after=armed.keepalive)]

    def _failed_arm(
        self,
        now: float,
        cand: Candidate,
        idle: float,
        target: Target,
        before: KeepaliveOptions | None,
        reason: str,
    ) -> ProbeEvent:
        self._probes[cand.process, Result.FAILED] += 1
        self._remember(cand.socket.cookie or 0, _Settled(Result.FAILED, now, cand.process, target))
        return self._event(Action.RESOLVED, cand, idle, result=Result.FAILED, reason=reason, before=before)

    # -- memory ---------------------------------------------------------------------------------------

    def _remember(self, cookie: int, settled: _Settled) -> None:
        self._settled[cookie] = settled
        self._settled.move_to_end(cookie)
        while len(self._settled) > _REMEMBER:
            self._settled.popitem(last=False)

    def _forget(self, observations: Mapping[int, Socket]) -> None:
        """Drop verdicts whose socket is gone: from the tables, or for the dead, from the owner's fds."""
        for cookie, settled in list(self._settled.items()):
            if settled.result is Result.DEAD:
                keep = self._ops.holds(settled.target)
            else:
                obs = observations.get(cookie)
                keep = obs is not None and obs.inode == settled.target.inode
            if not keep:
                del self._settled[cookie]
        for cookie in [c for c in self._dry_seen if c not in observations]:
            del self._dry_seen[cookie]

    @staticmethod
    def _event(
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
        )
