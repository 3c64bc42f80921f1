"""Typed refusals of the socket actions: why a probe could not be done, for the log and the metrics."""

from __future__ import annotations

import enum
import errno
import os
from dataclasses import dataclass


class Refusal(enum.Enum):
    """Why an action on another process's socket was refused or failed."""

    NO_PERMISSION = (
        "no_permission"  # EPERM: pidfd_getfd without CAP_SYS_PTRACE, destroy without CAP_NET_ADMIN
    )
    DENIED = "denied"  # EACCES: seccomp, an LSM (SELinux, AppArmor) or Yama ptrace_scope
    UNSUPPORTED = "unsupported"  # ENOSYS (kernel < 5.6), EOPNOTSUPP (no CONFIG_INET_DIAG_DESTROY)
    PROCESS_EXITED = "process_exited"  # ESRCH: the owner is gone
    FD_CLOSED = "fd_closed"  # EBADF, or the owner no longer holds this socket
    NOT_FOUND = "not_found"  # ENOENT from SOCK_DESTROY: the kernel has no such socket (any more)
    MISMATCH = "mismatch"  # options read back differ from those written
    ERROR = "error"  # anything else, with the errno in the detail


_BY_ERRNO: dict[int, Refusal] = {
    errno.EPERM: Refusal.NO_PERMISSION,
    errno.EACCES: Refusal.DENIED,
    errno.ENOSYS: Refusal.UNSUPPORTED,
    errno.EOPNOTSUPP: Refusal.UNSUPPORTED,
    errno.ESRCH: Refusal.PROCESS_EXITED,
    errno.EBADF: Refusal.FD_CLOSED,
    errno.ENOENT: Refusal.NOT_FOUND,
}

_HINTS: dict[Refusal, str] = {
    Refusal.NO_PERMISSION: "needs CAP_SYS_PTRACE (pidfd_getfd) or CAP_NET_ADMIN (SOCK_DESTROY)",
    Refusal.DENIED: "refused by seccomp or an LSM (SELinux, AppArmor, Yama ptrace_scope)",
    Refusal.UNSUPPORTED: "needs Linux >= 5.6 (pidfd_getfd) or CONFIG_INET_DIAG_DESTROY (reap)",
    Refusal.PROCESS_EXITED: "the process exited",
}


@dataclass(frozen=True, slots=True)
class Failure:
    """An action that could not be done: `refusal` for counting, `reason` for the log.

    >>> refusal_for(1, "pidfd_getfd")
    Failure(refusal=<Refusal.NO_PERMISSION: 'no_permission'>, reason='pidfd_getfd: Operation not permitted \
(needs CAP_SYS_PTRACE (pidfd_getfd) or CAP_NET_ADMIN (SOCK_DESTROY))')
    """

    refusal: Refusal
    reason: str


def refusal_for(err: int, doing: str) -> Failure:
    """A Failure for errno `err` raised while `doing` something."""
    refusal = _BY_ERRNO.get(err, Refusal.ERROR)
    text = f"{doing}: {os.strerror(err) if err else 'unknown error'}"
    hint = _HINTS.get(refusal)
    return Failure(refusal, f"{text} ({hint})" if hint else text)
