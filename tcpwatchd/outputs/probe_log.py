"""The journal side of probing: one structured line per proof, per reap and per arming, with its evidence.

A proof (`dead`, `alive`, `unreachable`) and a reap each get a line with a stable MESSAGE_ID, the peer, how
long the connection had been idle, what answered, and the keepalive options before and after. A failed
probe is logged once per distinct reason (with pids and numbers masked, so that "no CAP_SYS_PTRACE" on a
thousand sockets is one line); each failure still counts in tcpwatchd_phantom_probes_total{result="failed"}.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from tcpwatchd.actions.probe_types import Action, ProbeEvent, Result
from tcpwatchd.actions.sockops import KeepaliveOptions
from tcpwatchd.logs import FIELDS_ATTR

PROBE_LOGGER = "tcpwatchd.probe"
# Never change these: saved journalctl queries depend on them (docs/runbook.md "Proven phantoms").
PROOF_MESSAGE_ID = "2715ce0130d4427aa2bfba4be7ef83db"  # a probe settled a connection: dead/alive/unreachable
REAPED_MESSAGE_ID = "4d1422e8b7aa456482365886ba0117f5"  # reap mode destroyed a connection (SOCK_DESTROY)
FAILED_MESSAGE_ID = "4beadcc9476546d2bcbb176debe04c88"  # a probe could not be done (first of its reason)
PROBE_MESSAGE_IDS = {"proof": PROOF_MESSAGE_ID, "reaped": REAPED_MESSAGE_ID, "failed": FAILED_MESSAGE_ID}

_MAX_REASONS = 256  # distinct failure reasons remembered: bounded memory whatever the host does
_NUMBERS = re.compile(r"\d+")


def options_text(opts: KeepaliveOptions | None) -> str:
    """'keepalive=off idle=7200 interval=75 count=9' ('' when unknown)."""
    if opts is None:
        return ""
    on = "on" if opts.enabled else "off"
    return f"keepalive={on} idle={opts.idle} interval={opts.interval} count={opts.count}"


def probe_fields(event: ProbeEvent) -> dict[str, object]:
    """The journal fields of one probe event."""
    fields: dict[str, object] = {
        "TCPWATCHD_PROBE": event.result.value if event.result else event.action.value,
        "TCPWATCHD_PROCESS": event.process,
        "TCPWATCHD_PID": event.pid,
        "TCPWATCHD_SOCKET": f"{event.local} -> {event.peer}",
        "TCPWATCHD_PEER": event.peer,
        "TCPWATCHD_IDLE_SECONDS": round(event.idle_seconds, 1),
        "TCPWATCHD_SUPERSEDED": int(event.superseded),
        "TCPWATCHD_COOKIE": event.cookie,
    }
    optional = {
        "TCPWATCHD_ANSWERED": event.answered,
        "TCPWATCHD_REASON": event.reason,
        "TCPWATCHD_OPTIONS_BEFORE": options_text(event.before),
        "TCPWATCHD_OPTIONS_AFTER": options_text(event.after),
        "TCPWATCHD_UNIT": event.unit,
        "TCPWATCHD_POD": event.pod,
        "TCPWATCHD_NETNS": event.netns or "",
    }
    fields.update({k: v for k, v in optional.items() if v})
    return fields


def _describe(event: ProbeEvent) -> str:
    """The message: the event's own sentence, then the options (control characters in a hostile process
    name are escaped by the log handlers, tcpwatchd/logs.py)."""
    message = event.message()
    parts = [
        f"{when}: {text}"
        for when, text in (("before", options_text(event.before)), ("after", options_text(event.after)))
        if text
    ]
    return f"{message} [{'; '.join(parts)}]" if parts else message


class ProbeLog:
    """Logs probe events; stateful only in the failure reasons it has already logged."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(PROBE_LOGGER)
        self._reasons: set[str] = set()

    def log(self, events: Iterable[ProbeEvent]) -> None:
        for event in events:
            level, message_id = self._level(event)
            if level is None:
                continue
            fields = probe_fields(event)
            if message_id:
                fields["MESSAGE_ID"] = message_id
            self._log.log(level, "%s", _describe(event), extra={FIELDS_ATTR: fields})

    def _level(self, event: ProbeEvent) -> tuple[int | None, str]:
        if event.action is Action.DESTROYED:
            return logging.WARNING, REAPED_MESSAGE_ID
        if event.action is not Action.RESOLVED:  # ARMED, WOULD_ARM: what tcpwatchd did or would do
            return logging.INFO, ""
        if event.result is Result.FAILED:
            key = _NUMBERS.sub("#", event.reason)
            if key in self._reasons:
                return None, ""
            if len(self._reasons) < _MAX_REASONS:
                self._reasons.add(key)
            return logging.WARNING, FAILED_MESSAGE_ID
        if event.result is Result.ALIVE:
            return logging.INFO, PROOF_MESSAGE_ID
        return logging.WARNING, PROOF_MESSAGE_ID
