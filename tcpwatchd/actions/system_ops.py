"""The real socket operations on this host, as the prober sees them (`probe_types.ProbeOps`)."""

from __future__ import annotations

from tcpwatchd.actions.outcome import Failure, Refusal
from tcpwatchd.actions.sockdestroy import destroy, destroy_request
from tcpwatchd.actions.sockops import (
    KeepaliveOptions,
    SocketStatus,
    Target,
    holds_socket,
    read_status,
    set_keepalive,
)
from tcpwatchd.model import Socket


class SystemOps:
    """The real operations on this host, for `prober.Prober` (which sees them as `ProbeOps`)."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self._proc_root = proc_root
        self._seq = 0

    def read_status(self, target: Target) -> SocketStatus | Failure:
        return read_status(target, self._proc_root)

    def set_keepalive(self, target: Target, wanted: KeepaliveOptions) -> SocketStatus | Failure:
        return set_keepalive(target, wanted, self._proc_root)

    def holds(self, target: Target) -> bool:
        return holds_socket(target, self._proc_root)

    def destroy(self, target: Target, sock: Socket) -> Failure | None:
        if sock.cookie is None:
            return Failure(Refusal.ERROR, "SOCK_DESTROY needs the socket cookie (netlink source)")
        self._seq += 1
        request = destroy_request(
            int(sock.family),
            (sock.local_address, sock.local_port),
            (sock.remote_address, sock.remote_port),
            sock.cookie,
            self._seq,
        )
        return destroy(target, request, self._proc_root)
