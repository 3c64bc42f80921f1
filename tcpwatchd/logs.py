"""Logging: structured journal entries under systemd, one plain line per record elsewhere.

A finding is logged with `extra={"tcpwatchd_fields": {"TCPWATCHD_FINDING": "phantom", ...}}`. Under
systemd those keys become journal fields, with the stable MESSAGE_ID of its kind (the record's fields
carry it: outputs/announce.py takes it from the detector registry), so that
`journalctl -u tcpwatchd TCPWATCHD_FINDING=phantom` or `journalctl MESSAGE_ID=...` selects them. On stderr
they are appended as `finding=phantom process=nginx ...`, and no string (a process name is any bytes the
owner chose) can break a record across lines.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

FIELDS_ATTR = "tcpwatchd_fields"
SYSLOG_IDENTIFIER = "tcpwatchd"
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# A journal MESSAGE_ID is 128 bits in lowercase hex, as `systemd-id128 new` prints. Each finding kind has
# one, declared by its detector (detectors/registry.py KindSpec); sysctl drift is not a detector's, so its
# id is here. Never change one: saved journalctl queries and catalogs depend on them.
SYSCTL_DRIFT_MESSAGE_ID = "30b1cc650fe3496f99d8ccaa88be137b"
_MESSAGE_ID = re.compile(r"[0-9a-f]{32}")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# syslog priorities (sys/syslog.h), as journald's PRIORITY field wants them.
_PRIORITY = ((logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3))
# Journal field names: uppercase letters, digits and '_', at most 64 bytes, not starting with a digit
# nor with '_' (those are the trusted fields journald sets itself): systemd, journal_field_valid().
_FIELD_OK = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# C0 and C1 controls and the Unicode line and paragraph separators: each can start a new line somewhere.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NEEDS_QUOTES = re.compile(r'[\s"=\\]')

JournalSender = Callable[[Mapping[str, str]], None]


def fields_of(record: logging.LogRecord) -> dict[str, str]:
    """The finding fields attached to a record, as strings: {} when there are none."""
    raw = getattr(record, FIELDS_ATTR, None)
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): _text(v) for k, v in raw.items()}


def _text(value: object) -> str:
    """str(value), with lone surrogates (undecodable bytes) made printable instead of unencodable."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def journal_field_name(key: str) -> str | None:
    """The journal field for a key, or None when it cannot be one.

    >>> journal_field_name("tcpwatchd_pid")
    'TCPWATCHD_PID'
    """
    name = key.upper()
    return name if _FIELD_OK.fullmatch(name) else None


def priority_of(levelno: int) -> int:
    """The syslog priority for a logging level: a level between two maps to the more severe one."""
    for threshold, priority in _PRIORITY:
        if levelno <= threshold:
            return priority
    return 2  # LOG_CRIT


def journal_fields(record: logging.LogRecord, message: str) -> dict[str, str]:
    """Everything one journal entry carries for `record` (pure: the handler only sends it)."""
    out = {
        "MESSAGE": _text(message),
        "PRIORITY": str(priority_of(record.levelno)),
        "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
        "LOGGER": record.name,
        "CODE_FILE": record.pathname,
        "CODE_LINE": str(record.lineno),
        "CODE_FUNC": record.funcName,
    }
    for key, value in fields_of(record).items():
        name = journal_field_name(key)
        if name is not None and name not in out and name != "MESSAGE_ID":
            out[name] = value
    message_id = fields_of(record).get("MESSAGE_ID", "")
    if _MESSAGE_ID.fullmatch(message_id):
        out["MESSAGE_ID"] = message_id
    if record.exc_text:  # set by formatting a record that carries exc_info
        out["EXCEPTION_TEXT"] = _text(record.exc_text)
    return out


def _send_to_journal(fields: Mapping[str, str]) -> None:
    from systemd import journal

    journal.sendv(*(f"{name}={value}" for name, value in fields.items()))


class JournalFieldsHandler(logging.Handler):
    """Sends each record to journald's native socket with its finding fields and MESSAGE_ID.

    systemd.journal.JournalHandler would also forward every attribute of the record (MSG, ARGS, the
    fields dict as one repr string...); this sends exactly `journal_fields()`, through systemd-python's
    `sendv` unless told otherwise.
    """

    def __init__(self, sender: JournalSender = _send_to_journal) -> None:
        super().__init__()
        self.sender = sender

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sender(journal_fields(record, self.format(record)))
        except Exception:
            self.handleError(record)


def escape(text: str) -> str:
    r"""Control characters as visible escapes, so that one record stays one line.

    >>> escape("nginx\nFAKE 00:00 ERROR x")
    'nginx\\nFAKE 00:00 ERROR x'
    """
    return _UNSAFE.sub(_escape_char, _text(text))


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or (
        f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    )


def logfmt_value(value: str) -> str:
    r"""A value for `key=value`, quoted (with \\, \" and control escapes) unless it is a plain word.

    >>> logfmt_value('a "b"\n')
    '"a \\"b\\"\\n"'
    """
    if value and not _NEEDS_QUOTES.search(value) and not _UNSAFE.search(value):
        return _text(value)
    return '"' + escape(value.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def _plain_key(key: str) -> str:
    key = key.lower()
    key = key.removeprefix("tcpwatchd_")
    return re.sub(r"[^a-z0-9_]", "_", key) or "_"


class PlainFormatter(logging.Formatter):
    """`2024-05-01 12:00:00,123 WARNING tcpwatchd.findings: ... finding=phantom pid=42`, one line."""

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = escape(super().format(record))
        extra = describe(fields_of(record))
        return f"{line} {extra}" if extra else line


def journal_stream_matches(journal_stream: str | None, stderr_fd: int) -> bool:
    """Whether stderr is the journal stream systemd announced in $JOURNAL_STREAM ("device:inode").

    systemd.exec(5) asks programs to compare it with fstat() of stderr: an inherited variable with a
    redirected stderr (a shell started from a unit, a pipe) must not send our records elsewhere.
    """
    if not journal_stream:
        return False
    try:
        device, inode = (int(part) for part in journal_stream.split(":"))
        st = os.fstat(stderr_fd)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def _journal_available() -> bool:
    try:
        from systemd import journal  # noqa: F401
    except ImportError:
        return False
    return True


class PlainStderrHandler(logging.StreamHandler[TextIO]):
    """stderr, one PlainFormatter line per record."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(PlainFormatter())


def make_handler(under_systemd: bool) -> logging.Handler:
    """The journal handler under systemd, else a plain one-line stderr handler."""
    if not under_systemd:
        return PlainStderrHandler()
    handler = JournalFieldsHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


_OUR_HANDLERS = (JournalFieldsHandler, PlainStderrHandler)


def setup_logging(level: str = "info") -> None:
    """Configure the root logger once; calling again replaces our handler (level, destination)."""
    try:
        levelno = _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; one of {', '.join(_LEVELS)}") from None
    under_systemd = journal_stream_matches(os.environ.get("JOURNAL_STREAM"), 2) and _journal_available()
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OUR_HANDLERS)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(make_handler(under_systemd))
    root.setLevel(levelno)


def describe(fields: Mapping[str, Any]) -> str:
    """The fields as they would be appended on stderr: 'finding=phantom pid=42'."""
    return " ".join(f"{_plain_key(str(k))}={logfmt_value(_text(v))}" for k, v in fields.items())
