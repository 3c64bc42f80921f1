"""The probe state machine: arm a keepalive on idle connections, read the answer on later polls.

Each poll the caller passes the candidates (phantoms and idle suspects) and the poll's sockets by
cookie; the prober arms new probes within its guard rails and judges those in flight:

dead, alive, unreachable or failed (probe_judge.py says on what evidence). Alive and unreachable get their
options restored; in reap mode an unreachable superseded phantom is destroyed instead (SOCK_DESTROY).

Memory is bounded: `max_in_flight` probes, and `_REMEMBER` settled verdicts (oldest forgotten first),
each dropped as soon as its socket is gone.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import replace

from tcpwatchd.actions.outcome import Failure
from tcpwatchd.actions.probe_judge import Probe, Settled, idle_of, judge, probe_event
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
from tcpwatchd.actions.sockops import KeepaliveOptions, Target
from tcpwatchd.allowlist import first_match
from tcpwatchd.model import ProcessLabels, Socket, TcpState
from tcpwatchd.verdicts import Probed, Proof

_REMEMBER = 4096
_PROOFS = {Result.ALIVE: Proof.ALIVE, Result.DEAD: Proof.DEAD, Result.UNREACHABLE: Proof.UNREACHABLE}


class Prober:
    """`Prober(settings, ops)`; then `step(now, candidates, observations)` once per poll."""

    def __init__(self, settings: ProbeSettings, ops: ProbeOps) -> None:
        self.settings = settings
        self._ops = ops
        self._flight: dict[int, Probe] = {}
        self._settled: OrderedDict[int, Settled] = OrderedDict()
        self._dry_seen: OrderedDict[int, None] = OrderedDict()
        self._probes: Counter[tuple[ProcessLabels, Result]] = Counter()
        self._reaped: Counter[ProcessLabels] = Counter()

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
            done = judge(self.settings, self._ops, now, probe, observations.get(cookie))
            if done is not None:
                del self._flight[cookie]
                events += self._finish(now, probe, observations.get(cookie), *done)
        self._forget(observations)
        skipped: Counter[str] = Counter()
        self._start(now, candidates, events, skipped)
        return StepResult(tuple(events), self.summary(skipped))

    def restore_all(self, why: str = "tcpwatchd stopped") -> list[ProbeEvent]:
        """At shutdown (or before being replaced): put back the options of every probe in flight, each
        one RESOLVED as failed because of `why`."""
        events = [
            self._finish(p.armed_at, p, p.cand.socket, Result.FAILED, "", why)[0]
            for p in self._flight.values()
        ]
        self._flight.clear()
        return events

    def verdicts(self) -> dict[int, Probed]:
        """Cookie -> what probing says of it so far, for the detectors (`Context.probed`); failed
        probes say nothing."""
        out = {cookie: Probed(Proof.PROBING, p.armed_at) for cookie, p in self._flight.items()}
        for cookie, settled in self._settled.items():
            proof = _PROOFS.get(settled.result)
            if proof is not None:
                out[cookie] = Probed(proof, settled.at)
        return out

    def summary(self, skipped: Mapping[str, int] | None = None) -> ProbeSummary:
        proven: Counter[ProcessLabels] = Counter(
            s.labels for s in self._settled.values() if s.result in (Result.DEAD, Result.UNREACHABLE)
        )
        return ProbeSummary.frozen(
            self._probes, self._reaped, dict(proven), len(self._flight), dict(skipped or {})
        )

    # -- judging --------------------------------------------------------------------------------------

    def _finish(
        self, now: float, probe: Probe, obs: Socket | None, result: Result, answered: str, reason: str
    ) -> list[ProbeEvent]:
        event = probe_event(
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
                self._reaped[probe.cand.labels] += 1
                events.append(probe_event(Action.DESTROYED, probe.cand, probe.idle, answered="SOCK_DESTROY"))
                gone = True
            else:
                event = replace(event, reason=f"not destroyed: {destroyed.reason}")
        if not gone:
            event = self._restore(probe, event)
        self._probes[probe.cand.labels, result] += 1
        self._remember(probe.cand.socket.cookie or 0, Settled(result, now, probe.cand.labels, probe.target))
        return [event, *events]

    def _restore(self, probe: Probe, event: ProbeEvent) -> ProbeEvent:
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
        for cand in sorted(candidates, key=lambda c: (not c.superseded, -idle_of(c.socket))):
            why = self._refuse(now, cand, per_pid, started)
            if why:
                skipped[why] += 1
                continue
            cookie = cand.socket.cookie or 0
            if self.settings.dry_run:
                if cookie not in self._dry_seen:
                    events.append(
                        probe_event(Action.WOULD_ARM, cand, idle_of(cand.socket), after=self.settings.armed)
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
        idle = idle_of(cand.socket)
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
            return [self._restore(Probe(cand, target, now, before.keepalive, idle), event)]
        self._flight[cand.socket.cookie or 0] = Probe(cand, target, now, before.keepalive, idle)
        return [probe_event(Action.ARMED, cand, idle, before=before.keepalive, after=armed.keepalive)]

    def _failed_arm(
        self,
        now: float,
        cand: Candidate,
        idle: float,
        target: Target,
        before: KeepaliveOptions | None,
        reason: str,
    ) -> ProbeEvent:
        self._probes[cand.labels, Result.FAILED] += 1
        self._remember(cand.socket.cookie or 0, Settled(Result.FAILED, now, cand.labels, target))
        return probe_event(Action.RESOLVED, cand, idle, result=Result.FAILED, reason=reason, before=before)

    # -- memory ---------------------------------------------------------------------------------------

    def _remember(self, cookie: int, settled: Settled) -> None:
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
