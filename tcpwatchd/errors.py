"""Errors shared by the sources: a parse failure that says where, and a source that cannot be used here."""

from __future__ import annotations


class ParseError(ValueError):
    """Kernel text that does not have the shape we know: `path` and 1-based `line_no` say where.

    Raised for real format problems (an unknown header, a header and value line of different lengths),
    never for races such as a line cut short by a file changing under us: those are skipped and counted.
    """

    def __init__(self, path: str, line_no: int, reason: str) -> None:
        self.path = path
        self.line_no = line_no
        self.reason = reason
        super().__init__(f"{path}:{line_no}: {reason}")


class SourceUnavailable(Exception):
    """This source cannot work on this host or with these privileges (e.g. netlink sock_diag refused).

    The caller falls back to another source; `reason` says why, for the log and the source status.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source} unavailable: {reason}")
